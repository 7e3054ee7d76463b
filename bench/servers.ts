/**
 * The servers under test and their configs: the node backends (HTTP/1.1,
 * h2c, delayed), meshd, nginx, HAProxy and the minimal engines of engines.ts,
 * each on its own 127.0.0.1 port, each a child process.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, type Proc } from './procs.ts';
import type { MinimalEngine } from './report.ts';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const REPO_DIR = fileURLToPath(new URL('..', import.meta.url));

export interface Server {
  readonly name: string;
  readonly port: number;
  readonly proc: Proc;
}

/** The keep-alive upstream every target ends at. */
export function startBackend(tmp: string, port: number, cpu: number | undefined): Server {
  const proc = startProcess({
    name: 'backend',
    command: process.execPath,
    args: [join(BENCH_DIR, 'backend.ts'), String(port)],
    cpu,
    logFile: join(tmp, 'backend.log'),
  });
  return { name: 'backend', port, proc };
}

/** The http2 scenario's h2c (HTTP/2 prior knowledge) upstream, bench/h2backend.ts. */
export function startH2Backend(tmp: string, port: number, cpu: number | undefined): Server {
  const proc = startProcess({
    name: 'h2backend',
    command: process.execPath,
    args: [join(BENCH_DIR, 'h2backend.ts'), String(port)],
    cpu,
    logFile: join(tmp, 'h2backend.log'),
  });
  return { name: 'h2backend', port, proc };
}

/** One of the skewed scenario's upstreams (bench/skew-backend.ts): answers after `delayMs`, counts requests. */
export function startSkewBackend(name: string, tmp: string, port: number, delayMs: number, cpu: number | undefined): Server {
  const proc = startProcess({
    name,
    command: process.execPath,
    args: [join(BENCH_DIR, 'skew-backend.ts'), String(port), String(delayMs)],
    cpu,
    logFile: join(tmp, `${name}.log`),
  });
  return { name, port, proc };
}

/** An environment for Node children without settings that would change how they run (or what meshd does). */
function cleanNodeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NOTIFY_SOCKET'];
  delete env['MESHD_LOG_LEVEL'];
  delete env['NODE_OPTIONS'];
  delete env['FORCE_FETCH_PATH']; // would switch http-proxy-3 to its fetch() path
  return env;
}

/** One of the minimal forwarding engines of engines.ts (the "engines" scenario), on the same Node as meshd. */
export function startEngine(engine: MinimalEngine, tmp: string, port: number, backendPort: number, cpu: number | undefined): Server {
  const proc = startProcess({
    name: engine,
    command: process.execPath,
    args: [join(BENCH_DIR, 'engines.ts'), engine, String(port), String(backendPort)],
    cpu,
    logFile: join(tmp, `${engine}.log`),
    env: cleanNodeEnv(),
    cwd: REPO_DIR,
  });
  return { name: engine, port, proc };
}

export function meshdConfig(port: number, adminPort: number, backendPort: number, workers = 1): string {
  return [
    `admin: { listen: 127.0.0.1:${adminPort} }`,
    `outbound: { listen: 127.0.0.1:${port} }`,
    `workers: ${workers}`,
    'log: { level: warn }',
    'services:',
    '  bench:',
    '    endpoints:',
    `      - address: 127.0.0.1:${backendPort}`,
    '',
  ].join('\n');
}

export function startMeshd(tmp: string, port: number, adminPort: number, backendPort: number, cpu: number | undefined): Server {
  return startMeshdWithConfig(tmp, port, meshdConfig(port, adminPort, backendPort), cpu);
}

/** meshd with the given YAML config (written to TMP/meshd.yaml), whose outbound listener is `port`. */
export function startMeshdWithConfig(tmp: string, port: number, yaml: string, cpu: number | undefined): Server {
  const config = join(tmp, 'meshd.yaml');
  writeFileSync(config, yaml);
  // As the unit and the image run it (docs/design.md, Memory).
  const env = { ...cleanNodeEnv(), MALLOC_ARENA_MAX: '2' };
  const proc = startProcess({
    name: 'meshd',
    // The pinned Node that runs this harness, with the V8 settings of npm start, the unit and the
    // image; bin/meshd.js then runs dist/ (built by npm run bench) in-process.
    command: process.execPath,
    args: ['--max-semi-space-size=4', join(REPO_DIR, 'bin', 'meshd.js'), 'run', '--config', config],
    cpu,
    logFile: join(tmp, 'meshd.log'),
    env,
    cwd: REPO_DIR,
  });
  return { name: 'meshd', port, proc };
}

/** One service of a meshd config (the lines under `services:`), indented for it. */
export interface MeshdService {
  readonly name: string;
  readonly endpointPorts: readonly number[];
  /** Extra keys of the service, one YAML line each (e.g. `protocol: h2c`). */
  readonly extra?: readonly string[];
}

/** A meshd config with several services (log level warn, everything on 127.0.0.1). */
export function meshdMultiConfig(port: number, adminPort: number, services: readonly MeshdService[]): string {
  const lines = [`admin: { listen: 127.0.0.1:${adminPort} }`, `outbound: { listen: 127.0.0.1:${port} }`, 'log: { level: warn }', 'services:'];
  for (const svc of services) {
    lines.push(`  ${svc.name}:`, '    endpoints:');
    for (const p of svc.endpointPorts) lines.push(`      - address: 127.0.0.1:${p}`);
    for (const extra of svc.extra ?? []) lines.push(`    ${extra}`);
  }
  return `${lines.join('\n')}\n`;
}

export function nginxConfig(dir: string, port: number, backendPort: number, http2 = false): string {
  return `${nginxHead(dir)}  upstream bench_backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  server {
    listen 127.0.0.1:${port}${http2 ? ' http2' : ''} backlog=4096;
    location / {
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`;
}

/**
 * nginx in front of the HTTP/1.1 backend. `http2`: the listener speaks h2c
 * (HTTP/2 with prior knowledge, no TLS; nginx 1.22 then accepts no HTTP/1.1
 * there), the upstream stays HTTP/1.1 (nginx cannot proxy to h2c).
 */
export function startNginx(nginx: string, tmp: string, port: number, backendPort: number, cpu: number | undefined, http2 = false): Server {
  const dir = join(tmp, 'nginx');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const config = join(dir, 'nginx.conf');
  writeFileSync(config, nginxConfig(dir, port, backendPort, http2));
  const proc = startProcess({
    name: 'nginx',
    command: nginx,
    // -e: the startup error log, before nginx.conf is read (default is /var/log/nginx).
    args: ['-p', dir, '-c', config, '-e', join(dir, 'nginx-error.log'), '-g', 'daemon off;'],
    cpu,
    logFile: join(tmp, 'nginx.log'),
  });
  return { name: 'nginx', port, proc };
}

export function haproxyConfig(port: number, backendPort: number): string {
  return `# generated by bench/run.ts
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 120s
  option http-keep-alive
  http-reuse always
frontend bench_in
  bind 127.0.0.1:${port}
  default_backend bench_backend
backend bench_backend
  server s1 127.0.0.1:${backendPort}
`;
}

export function startHaproxy(haproxy: string, tmp: string, port: number, backendPort: number, cpu: number | undefined): Server {
  const config = join(tmp, 'haproxy.cfg');
  writeFileSync(config, haproxyConfig(port, backendPort));
  const proc = startProcess({
    name: 'haproxy',
    command: haproxy,
    // -db: foreground, no daemon; -f: config.
    args: ['-db', '-f', config],
    cpu,
    logFile: join(tmp, 'haproxy.log'),
  });
  return { name: 'haproxy', port, proc };
}

/** nginx with a config built by `config(dir)` (dir = TMP/<name>, for its pid, logs and temp paths). */
export function startNginxWithConfig(nginx: string, tmp: string, name: string, port: number, config: (dir: string) => string, cpu: number | undefined): Server {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, config(dir));
  const proc = startProcess({
    name,
    command: nginx,
    args: ['-p', dir, '-c', file, '-e', join(dir, 'nginx-error.log'), '-g', 'daemon off;'],
    cpu,
    logFile: join(tmp, `${name}.log`),
  });
  return { name, port, proc };
}

/** The common head of every nginx config of the bench: 1 worker, no access log, temp paths under `dir`. */
function nginxHead(dir: string): string {
  return `# generated by the meshd bench
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events {
  worker_connections 4096;
  multi_accept on;
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 120s;
  keepalive_requests 1000000;
`;
}

export interface NginxTlsFiles {
  /** nginx A's client certificate and key (meshd A's, from meshd's CLI). */
  readonly clientCert: string;
  readonly clientKey: string;
  /** nginx B's server certificate (DNS SAN `serverName`, same CA) and key. */
  readonly serverCert: string;
  readonly serverKey: string;
  readonly serverName: string;
  /** The CA both sides trust. */
  readonly ca: string;
}

/**
 * nginx A of the mtls scenario: plain HTTP in, HTTPS with a client
 * certificate out to nginx B (verified against the CA and `serverName`),
 * upstream keepalive 64, TLS sessions reused.
 */
export function nginxTlsClientConfig(dir: string, port: number, upstreamPort: number, tls: NginxTlsFiles): string {
  return `${nginxHead(dir)}  upstream tls_hop {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass https://tls_hop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_certificate ${tls.clientCert};
      proxy_ssl_certificate_key ${tls.clientKey};
      proxy_ssl_trusted_certificate ${tls.ca};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 2;
      proxy_ssl_name ${tls.serverName};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
`;
}

/** nginx B of the mtls scenario: HTTPS in, client certificate required (ssl_verify_client on), plain keep-alive HTTP to the backend. */
export function nginxTlsServerConfig(dir: string, port: number, backendPort: number, tls: NginxTlsFiles): string {
  return `${nginxHead(dir)}  upstream bench_backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  ssl_session_cache shared:SSL:10m;
  ssl_session_timeout 1h;
  server {
    listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate ${tls.serverCert};
    ssl_certificate_key ${tls.serverKey};
    ssl_client_certificate ${tls.ca};
    ssl_verify_client on;
    ssl_verify_depth 2;
    location / {
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`;
}
