/**
 * File discovery: a service's endpoints listed in a YAML/JSON file
 * (`endpoints: [...]`) that is watched. A change takes effect without a
 * restart; a broken file keeps the last good set, is logged and counted.
 */
import { readFile } from 'node:fs/promises';
import type { EndpointSpec } from '../config/types.ts';
import { parseEndpointsFile } from '../config/load.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DiscoverySource } from './source.ts';
import { DEFAULT_FILE_WATCH, FileWatch, type FileWatchOptions } from '../util/file-watch.ts';

export interface EndpointsFileEvents {
  /** A new, valid endpoint list. */
  updated(endpoints: readonly EndpointSpec[]): void;
  /** The file could not be read or parsed; the last good list stays. */
  failed(reason: string): void;
}

export interface EndpointsFileStatus {
  path: string;
  endpoints: number;
  lastLoadedAt: string | undefined;
  lastError: string | undefined;
  lastErrorAt: string | undefined;
}

export class EndpointsFileSource implements DiscoverySource {
  readonly name = 'file';
  readonly path: string;
  private readonly service: string;
  private readonly events: EndpointsFileEvents;
  private readonly log: Logger;
  private readonly watch: FileWatch;
  private current: readonly EndpointSpec[] = [];
  private lastLoadedAt: Date | undefined;
  private lastError: string | undefined;
  private lastErrorAt: Date | undefined;

  constructor(service: string, path: string, events: EndpointsFileEvents, log: Logger, watchOptions: FileWatchOptions = DEFAULT_FILE_WATCH) {
    this.service = service;
    this.path = path;
    this.events = events;
    this.log = log;
    this.watch = new FileWatch(
      path,
      watchOptions,
      (text) => this.apply(text),
      (err) => this.fail(err.message),
    );
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.current;
  }

  /** Reads the file once, then watches it. A missing or bad file starts empty and is reported. */
  async start(): Promise<void> {
    try {
      const text = await readFile(this.path, 'utf8');
      this.watch.prime(text);
      this.apply(text);
    } catch (err) {
      this.fail((err as Error).message);
    }
    this.watch.start();
  }

  stop(): void {
    this.watch.stop();
  }

  status(): EndpointsFileStatus {
    return {
      path: this.path,
      endpoints: this.current.length,
      lastLoadedAt: this.lastLoadedAt?.toISOString(),
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt?.toISOString(),
    };
  }

  private apply(text: string): void {
    let endpoints: EndpointSpec[];
    try {
      endpoints = parseEndpointsFile(text, this.path);
    } catch (err) {
      this.fail(
        err instanceof ConfigError
          ? err.problems.map((p) => `${p.line === undefined ? '' : `line ${p.line}: `}${p.path}: ${p.message}`).join('; ')
          : (err as Error).message,
      );
      return;
    }
    this.current = endpoints;
    this.lastLoadedAt = new Date();
    this.lastError = undefined;
    this.log.info({ service: this.service, file: this.path, endpoints: endpoints.length }, 'endpoints file loaded');
    this.events.updated(endpoints);
  }

  private fail(reason: string): void {
    this.lastError = reason;
    this.lastErrorAt = new Date();
    this.log.error(
      { service: this.service, file: this.path, reason, keptEndpoints: this.current.length },
      'endpoints file rejected; keeping the last good endpoints',
    );
    this.events.failed(reason);
  }
}
