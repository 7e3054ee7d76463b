/**
 * `meshd` command line: run, check, --version, --help. Parses arguments and
 * dispatches; each command lives in its own module.
 */
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/units.ts';
// Each command's module is loaded only when it runs: the daemon never carries the PKI
// tooling (node-forge) or the demo in memory.
import { VERSION } from './version.ts';

const USAGE = `meshd ${VERSION} — per-host service-mesh daemon

Usage:
  meshd run [--config FILE]     run the daemon (no file: the embedded default config)
  meshd check --config FILE     validate a config file; exit 1 naming each problem
  meshd demo [--duration 60s]   watch the feedback loop eject a slow and a failing host, live
  meshd ca init --dir DIR --trust-domain DOMAIN      create a root CA
  meshd cert issue --ca DIR --identity ID --out DIR  issue a host certificate (SPIFFE ID in a URI SAN)
  meshd cert inspect FILE                            show identity, issuer, validity, fingerprint
  meshd --version               print the version
  meshd COMMAND --help          help for one command
`;

const COMMAND_HELP: Record<string, string> = {
  run: `Usage: meshd run [--config FILE]

Runs the daemon. Without --config it uses the embedded default config:
outbound HTTP on 127.0.0.1:4140 and admin on 127.0.0.1:9990, no services.

  --config, -c FILE   YAML config file (reloaded on SIGHUP and when the file changes)

Environment:
  MESHD_LOG_LEVEL     overrides log.level (trace, debug, info, warn, error, fatal, silent)
  NOTIFY_SOCKET       set by systemd: READY/RELOADING/STOPPING/WATCHDOG are sent to it

Signals: SIGHUP reloads the config; SIGTERM/SIGINT drain requests in flight
(up to drainTimeout) and exit 0.
`,
  demo: `Usage: meshd demo [--duration DURATION]

Starts three demo backends (one steady, one that turns 10x slow for 30 s, one
that fails 30 % of requests for 20 s, on a 90 s cycle), a meshd on an embedded
demo config and a 200 req/s load generator, and shows each endpoint's share of
traffic, latency, success rate and state, refreshed every second.

  --duration, -d DURATION   stop by itself after this long (e.g. 60s); default: until Ctrl-C
`,
  check: `Usage: meshd check --config FILE

Validates FILE against meshd's config schema without starting anything.
Exit 0 when valid; exit 1 listing every problem as FILE:LINE: PATH: MESSAGE.
`,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    const topic = command === 'help' ? rest[0] : undefined;
    process.stdout.write(topic !== undefined && COMMAND_HELP[topic] !== undefined ? COMMAND_HELP[topic] : USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`meshd ${VERSION}\n`);
    return 0;
  }
  if (command === 'ca') return (await import('./pki.ts')).caCommand(rest);
  if (command === 'cert') return (await import('./pki.ts')).certCommand(rest);
  const help = COMMAND_HELP[command];
  if (help === undefined) {
    process.stderr.write(`meshd: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  let values: { config?: string | undefined; help?: boolean | undefined; duration?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { config: { type: 'string', short: 'c' }, duration: { type: 'string', short: 'd' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`meshd ${command}: ${(err as Error).message}\n\n${help}`);
    return 2;
  }
  const misplaced = command === 'demo' ? values.config : values.duration;
  if (misplaced !== undefined) {
    process.stderr.write(`meshd ${command}: ${command === 'demo' ? '--config' : '--duration'} does not apply to this command\n\n${help}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(help);
    return 0;
  }
  switch (command) {
    case 'run':
      return (await import('./run.ts')).runCommand(values.config);
    case 'demo': {
      const duration = values.duration === undefined ? undefined : parseDuration(values.duration);
      if (values.duration !== undefined && duration === undefined) {
        process.stderr.write(`meshd demo: --duration expects a duration like "60s", got "${values.duration}"\n`);
        return 2;
      }
      return (await import('./demo.ts')).demoCommand(duration);
    }
    case 'check':
      if (values.config === undefined) {
        process.stderr.write(`meshd check: --config FILE is required\n\n${help}`);
        return 2;
      }
      return (await import('./check.ts')).checkCommand(values.config);
    default:
      return 2;
  }
}

const code = await main(process.argv.slice(2));
// A stopped daemon exits at once (pino writes synchronously); other commands let stdout flush.
if (process.argv[2] === 'run' || process.argv[2] === 'demo') process.exit(code);
process.exitCode = code;
