/**
 * The few facts meshd reads from the Kubernetes API server, with the pod's
 * service account (token and cluster CA mounted at the standard paths, the
 * API server from KUBERNETES_SERVICE_HOST/PORT), or with the paths and
 * address the config gives. TLS verification is always on.
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { KubernetesSettings } from '../config/types.ts';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubernetesError extends Error {
  readonly code = 'kubernetes_unavailable';
  /** The API server's HTTP status, when it answered. */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }

  /** Asking again may help: no answer, a server error or throttling (not a refusal or a missing object). */
  get transient(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429;
  }
}

/** Where and how to reach the API server, resolved from the settings and the environment. */
export interface ApiAccess {
  readonly server: URL;
  readonly token: string;
  readonly ca: string;
}

export async function apiAccess(settings: KubernetesSettings, env: NodeJS.ProcessEnv): Promise<ApiAccess> {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const address = settings.apiServer ?? (host === undefined ? undefined : `https://${host.includes(':') ? `[${host}]` : host}:${port}`);
  if (address === undefined)
    throw new KubernetesError('no API server: not running in a pod (KUBERNETES_SERVICE_HOST unset) and kubernetes.apiServer not configured');
  const read = async (what: string, path: string): Promise<string> => {
    try {
      return (await readFile(path, 'utf8')).trim();
    } catch (err) {
      throw new KubernetesError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const [token, ca] = await Promise.all([
    read('service account token', settings.tokenFile ?? `${SERVICE_ACCOUNT_DIR}/token`),
    read('cluster CA', settings.caFile ?? `${SERVICE_ACCOUNT_DIR}/ca.crt`),
  ]);
  return { server: new URL(address), token, ca };
}

/** GETs a JSON object from the API server. */
export function getJson(access: ApiAccess, path: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, access.server),
      { method: 'GET', ca: access.ca, headers: { authorization: `Bearer ${access.token}`, accept: 'application/json', 'user-agent': 'meshd' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          if (res.statusCode !== 200) {
            reject(new KubernetesError(`GET ${path}: ${res.statusCode} ${apiMessage(text)}`, res.statusCode));
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new KubernetesError(`GET ${path}: the answer is not JSON`));
          }
        });
        res.on('error', (err) => reject(new KubernetesError(`GET ${path}: ${err.message}`)));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new KubernetesError(`GET ${path}: ${err.code ?? err.message}`)));
    req.end();
  });
}

/** The message of a Kubernetes Status answer, or the start of the text. */
function apiMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    /* not a Status */
  }
  return text.slice(0, 200);
}
