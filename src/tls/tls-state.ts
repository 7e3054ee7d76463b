/**
 * The TLS material in force, and its rotation. The certificate, key and
 * bundle files are watched (including Kubernetes' atomic symlink swaps); a
 * change is loaded and checked as a whole, then handed to the listeners and
 * upstream pools, which build fresh secure contexts for new connections while
 * established ones carry on. A bad or mismatched set is logged and counted,
 * and the old material keeps serving.
 */
import type { Logger } from '../log.ts';
import { FileWatch } from '../util/file-watch.ts';
import type { TlsSettings } from '../config/types.ts';
import { loadTlsMaterial, TlsMaterialError, type TlsMaterial } from './material.ts';

export type { TlsSettings, TlsVersion } from '../config/types.ts';

export class TlsState {
  private material: TlsMaterial;
  readonly settings: TlsSettings;
  private readonly log: Logger;
  private readonly subscribers: ((m: TlsMaterial) => void)[] = [];
  private readonly watches: FileWatch[] = [];
  private expiryTimer: NodeJS.Timeout | undefined;
  /** Retries material refused only for not being valid yet, once it becomes valid. */
  private notYetValidTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private onRotationResult: (ok: boolean) => void = () => {};

  private constructor(material: TlsMaterial, settings: TlsSettings, log: Logger) {
    this.material = material;
    this.settings = settings;
    this.log = log;
  }

  /** Loads the material; throws TlsMaterialError when it is unusable. */
  static async load(settings: TlsSettings, log: Logger): Promise<TlsState> {
    const material = await loadTlsMaterial(settings);
    return new TlsState(material, settings, log);
  }

  get current(): TlsMaterial {
    return this.material;
  }

  subscribe(fn: (m: TlsMaterial) => void): void {
    this.subscribers.push(fn);
  }

  /** Counts rotations (true) and rejected material (false). */
  onRotation(fn: (ok: boolean) => void): void {
    this.onRotationResult = fn;
  }

  expired(now = Date.now()): boolean {
    return now >= this.material.notAfter.getTime() || now < this.material.notBefore.getTime();
  }

  start(): void {
    for (const path of new Set([this.settings.cert, this.settings.key, this.settings.ca])) {
      const watch = new FileWatch(
        path,
        { settleMs: 300, pollMs: 5_000 },
        () => void this.reload(),
        (err) => this.log.warn({ file: path, err: err.message }, 'cannot watch a TLS file; rotation needs a reload'),
      );
      watch.start();
      this.watches.push(watch);
    }
    this.checkExpiry();
    this.expiryTimer = setInterval(() => this.checkExpiry(), 60_000);
    this.expiryTimer.unref();
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    clearInterval(this.expiryTimer);
    clearTimeout(this.notYetValidTimer);
  }

  /** Reloads the files now (also on SIGHUP). */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(async () => {
      let next: TlsMaterial;
      clearTimeout(this.notYetValidTimer);
      try {
        // Switching to a certificate outside its validity would only make every peer refuse this host.
        next = await loadTlsMaterial(this.settings, { validAt: Date.now() });
      } catch (err) {
        const reason = err instanceof TlsMaterialError ? err.message : String(err);
        this.onRotationResult(false);
        this.log.error(
          { event: 'tls_rejected', reason, keeping: this.material.fingerprint },
          'new TLS material rejected; the current certificate keeps serving',
        );
        this.retryWhenValid(err);
        return;
      }
      if (next.fingerprint === this.material.fingerprint && next.caPem === this.material.caPem && next.keyPem === this.material.keyPem) return;
      const previous = this.material;
      this.material = next;
      this.onRotationResult(true);
      this.log.info(
        { event: 'tls_rotated', identity: next.identity, notAfter: next.notAfter.toISOString(), fingerprint: next.fingerprint, previous: previous.fingerprint },
        'TLS material rotated; new connections use it',
      );
      for (const fn of this.subscribers) fn(next);
      this.checkExpiry();
    });
    return this.reloading;
  }

  /**
   * An issuer whose clock runs ahead writes a certificate that becomes valid a little later: try
   * it again then (within a day; anything later waits for the next change of the files).
   */
  private retryWhenValid(err: unknown): void {
    if (!(err instanceof TlsMaterialError) || err.validFrom === undefined) return;
    const waitMs = err.validFrom - Date.now() + 1_000;
    if (waitMs > 86_400_000) return;
    this.notYetValidTimer = setTimeout(() => void this.reload(), Math.max(0, waitMs));
    this.notYetValidTimer.unref();
  }

  private checkExpiry(): void {
    const left = this.material.notAfter.getTime() - Date.now();
    if (left <= 0)
      this.log.error({ identity: this.material.identity, notAfter: this.material.notAfter.toISOString() }, 'certificate EXPIRED; peers will refuse this host');
    else if (left < this.settings.expiryWarningMs) {
      this.log.warn(
        { identity: this.material.identity, notAfter: this.material.notAfter.toISOString(), secondsLeft: Math.floor(left / 1000) },
        'certificate expires soon',
      );
    }
  }
}
