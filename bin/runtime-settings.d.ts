// Types of bin/runtime-settings.js, for the supervisor that forks workers with the same settings.
export declare const V8_FLAGS: readonly (readonly [option: string, flag: string])[];
export declare const RUNTIME_ENV: Readonly<Record<string, string>>;
export declare const APPLIED_MARK: string;
export declare function missingFlags(execArgv: readonly string[], env: NodeJS.ProcessEnv): string[];
export declare function runtimeEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
export declare function needsRuntimeSettings(execArgv: readonly string[], env: NodeJS.ProcessEnv): boolean;
