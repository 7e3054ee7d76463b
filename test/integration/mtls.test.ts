/**
 * mTLS between two meshd hosts on loopback: HTTP and TCP end to end with the
 * verified caller identity, authorization, identity checks, real clients
 * (openssl s_client, curl) presenting bad credentials, and rotation of
 * certificates and of the root CA under load with zero failed requests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBackend, startRawBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, splitAddress } from '../helpers/http.ts';
import { tcpRoundTrip } from '../helpers/tcp.ts';
import { DOMAIN, newCa, tlsBlock, writeHost } from '../helpers/pki.ts';
import { createIntermediateCa, issueLeaf, type IssuedCertificate } from '../../src/tls/pki.ts';

function run(cmd: string, args: string[], input = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}` });
    });
    child.stdin?.end(input);
  });
}

const inboundOf = async (d: RunningDaemon): Promise<string> =>
  (await d.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'inbound'))['address'] as string;

describe('mTLS between hosts', () => {
  let dir: string;
  let ca: IssuedCertificate;
  let web: Backend;
  let echo: Backend;
  let hostA: { dir: string; identity: string };
  let hostB: { dir: string; identity: string };
  let B: RunningDaemon;
  let A: RunningDaemon;
  let inbound: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-mtls-'));
    ca = await newCa();
    hostA = await writeHost(dir, 'a', ca, ca.certPem);
    hostB = await writeHost(dir, 'b', ca, ca.certPem);
    web = await startBackend();
    echo = await startRawBackend((socket) => socket.pipe(socket));
    B = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
log: { access: { enabled: true, sampleRatio: 0 } }
${tlsBlock(hostB.dir)}
local:
  web: { target: ${web.address}, allow: [ "spiffe://${DOMAIN}/host/*" ] }
  secret: { target: ${web.address}, allow: [ "spiffe://${DOMAIN}/host/c" ] }
  db: { target: ${echo.address}, tcp: true, allow: [ "spiffe://${DOMAIN}/host/a" ] }
`);
    inbound = await inboundOf(B);
    A = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostA.dir)}
services:
  web: { endpoints: [ { address: ${inbound}, identity: ${hostB.identity} } ] }
  secret: { endpoints: [ { address: ${inbound}, identity: ${hostB.identity} } ], retries: { attempts: 1 } }
  impostor: { endpoints: [ { address: ${inbound}, identity: "spiffe://${DOMAIN}/host/zzz" } ], retries: { attempts: 1 } }
  db: { endpoints: [ { address: ${inbound}, identity: ${hostB.identity} } ], tcp: { listen: 127.0.0.1:0 } }
`);
  });

  after(async () => {
    await A.stop();
    await B.stop();
    await Promise.all([web.close(), echo.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('carries HTTP end to end; the app sees the verified caller and never a spoofed one', async () => {
    const spoofs = ['x-meshd-peer-identity', 'X_Meshd_Peer_Identity', 'x-meshd_peer-identity', 'X-MESHD-PEER_IDENTITY'];
    const reply = await request(A.outbound, {
      path: '/hello',
      headers: { host: 'web', ...Object.fromEntries(spoofs.map((n) => [n, 'spiffe://evil.example/host/root'])) },
    });
    assert.equal(reply.status, 200);
    const seen = reply.json() as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello');
    assert.equal(seen.headers['x-meshd-peer-identity'], hostA.identity);
    // CGI/WSGI/Rack read "_" as "-": no spelling of the identity field but meshd's own may arrive.
    const identityFields = Object.keys(seen.headers).filter((n) => n.replaceAll('_', '-') === 'x-meshd-peer-identity');
    assert.deepEqual(identityFields, ['x-meshd-peer-identity']);
    // A caller on host B's inbound directly (a meshd of its own, or anything holding a certificate) is stripped the same way.
    const direct = await new Promise<Record<string, string>>((resolve, reject) => {
      const [host, port] = splitAddress(inbound);
      const req = httpsRequest(
        {
          host,
          port,
          path: '/direct',
          headers: { host: 'web', X_Meshd_Peer_Identity: 'spiffe://evil.example/host/root', 'x-meshd-peer-identity': 'spiffe://evil.example/host/root' },
          cert: readFileSync(join(hostA.dir, 'cert.pem')),
          key: readFileSync(join(hostA.dir, 'key.pem')),
          ca: readFileSync(join(hostA.dir, 'ca.pem')),
          checkServerIdentity: () => undefined,
          agent: false,
        },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve((JSON.parse(body) as { headers: Record<string, string> }).headers));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(direct['x-meshd-peer-identity'], hostA.identity);
    assert.equal(direct['x_meshd_peer_identity'], undefined);
  });

  it('carries a TCP conversation over the same mTLS hop', async () => {
    const line = await A.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp');
    // The half-close crosses both hops too: the answer comes back after the caller is done sending.
    assert.equal(await tcpRoundTrip(line['address'] as string, 'ping over mtls'), 'ping over mtls');
  });

  it('refuses a caller its policy does not allow, with 403 forbidden and the identity only in the log', async () => {
    const reply = await request(A.outbound, { headers: { host: 'secret' } });
    assert.equal(reply.status, 403);
    assert.equal(reply.headers['x-meshd-error'], 'forbidden');
    assert.ok(!reply.body.includes(hostA.identity), 'the identity is not in the body');
    const line = await B.waitForLog((l) => l['event'] === 'forbidden');
    assert.equal(line['identity'], hostA.identity);
    // The refusal is on B's access log too, with the verified caller.
    const access = await B.waitForLog((l) => l['access'] === true && l['error'] === 'forbidden');
    assert.deepEqual([access['listener'], access['service'], access['status'], access['caller']], ['inbound', 'local:secret', 403, hostA.identity]);
    // Counted under the same service label as the local service's requests, so the two join.
    const metrics = (await request(B.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_authorization_total', { service: 'local:secret', result: 'denied' }) >= 1, metrics);
  });

  it('treats a server with the wrong identity as a failed connect', async () => {
    const reply = await request(A.outbound, { headers: { host: 'impostor' } });
    assert.equal(reply.status, 502);
    assert.equal(reply.headers['x-meshd-error'], 'connect_failed');
    await A.waitForLog((l) => typeof l['cause'] === 'string' && l['cause'] === 'ERR_MESHD_IDENTITY_MISMATCH');
  });

  it('refuses bad clients with a clear log line, and keeps serving', async () => {
    const [host, port] = splitAddress(inbound);
    const target = `${host}:${port}`;
    const other = await newCa('other.example');
    const stranger = await writeHost(dir, 'stranger', other, other.certPem, { domain: 'other.example' });
    const expired = await writeHost(dir, 'expired', ca, ca.certPem, { now: new Date(Date.now() - 48 * 3_600_000), ttlMs: 3_600_000 });
    const future = await writeHost(dir, 'future', ca, ca.certPem, { now: new Date(Date.now() + 48 * 3_600_000) });
    const caFile = join(hostA.dir, 'ca.pem');
    const cases: [string, string[], string][] = [
      ['no client certificate', ['s_client', '-connect', target, '-CAfile', caFile, '-tls1_3'], 'no_client_certificate'],
      [
        'another CA',
        ['s_client', '-connect', target, '-CAfile', caFile, '-cert', join(stranger.dir, 'cert.pem'), '-key', join(stranger.dir, 'key.pem')],
        'untrusted_certificate',
      ],
      [
        'expired',
        ['s_client', '-connect', target, '-CAfile', caFile, '-cert', join(expired.dir, 'cert.pem'), '-key', join(expired.dir, 'key.pem')],
        'certificate_expired',
      ],
      [
        'not yet valid',
        ['s_client', '-connect', target, '-CAfile', caFile, '-cert', join(future.dir, 'cert.pem'), '-key', join(future.dir, 'key.pem')],
        'certificate_not_yet_valid',
      ],
      ['TLS 1.0', ['s_client', '-connect', target, '-tls1', '-cipher', 'DEFAULT:@SECLEVEL=0'], 'protocol_version'],
      ['TLS 1.1', ['s_client', '-connect', target, '-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0'], 'protocol_version'],
      [
        'TLS 1.2 (1.3 required by default)',
        ['s_client', '-connect', target, '-tls1_2', '-cert', join(hostA.dir, 'cert.pem'), '-key', join(hostA.dir, 'key.pem')],
        'protocol_version',
      ],
    ];
    for (const [name, args, reason] of cases) {
      const mark = B.logs.length;
      // A request after the handshake: a server that accepted would answer it.
      const result = await run('openssl', args, 'GET / HTTP/1.1\r\nHost: web\r\n\r\n');
      assert.doesNotMatch(result.out, /HTTP\/1\.1 200/, `${name}: must not be served`);
      const line = await B.waitForLog((l) => l.msg.startsWith('TLS handshake refused'), 5_000, mark);
      assert.equal(line['reason'], reason, `${name}: ${String(line['detail'])}`);
    }
    // curl with no client certificate, and plain HTTP (garbage for a TLS port).
    const curl = await run('curl', ['-sS', '--max-time', '5', '--cacert', caFile, `https://${target}/`]);
    assert.notEqual(curl.code, 0);
    const garbage = await new Promise<string>((resolve) => {
      const s = connect(port, host);
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', () => {});
      s.setTimeout(5_000, () => s.destroy());
      s.write('GET / HTTP/1.1\r\nHost: web\r\n\r\n\x00\x01\x02garbage');
    });
    assert.doesNotMatch(garbage, /200/);
    const metrics = (await request(B.admin, { path: '/metrics' })).body;
    for (const reason of ['no_client_certificate', 'untrusted_certificate', 'certificate_expired', 'protocol_version']) {
      assert.ok(metricValue(metrics, 'meshd_tls_handshake_errors_total', { listener: 'inbound', reason }) >= 1, reason);
    }
    assert.equal((await request(A.outbound, { headers: { host: 'web' } })).status, 200, 'still serving');
  });

  it('exposes the certificate expiry and identity', async () => {
    const metrics = (await request(B.admin, { path: '/metrics' })).body;
    const seconds = metricValue(metrics, 'meshd_certificate_expiry_seconds', { identity: hostB.identity });
    assert.ok(seconds > 3_000 && seconds <= 3_660, `expiry in ${seconds} s`);
    const ready = (await request(B.admin, { path: '/readyz' })).json() as { checks: { certificateValid: boolean } };
    assert.equal(ready.checks.certificateValid, true);
  });

  it('rotates certificates on both sides, then the root CA, under load with zero failed requests', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loops = Array.from({ length: 8 }, async () => {
      const stopAt = Date.now() + 60_000;
      while (running && Date.now() < stopAt) {
        try {
          const r = await request(A.outbound, { headers: { host: 'web' }, agent });
          if (r.status === 200) ok++;
          else failures.push(`${r.status} ${String(r.headers['x-meshd-error'])}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    const rotated = async (d: RunningDaemon, mark: number): Promise<void> => {
      await d.waitForLog((l) => l['event'] === 'tls_rotated', 10_000, mark);
    };
    const reissue = async (host: { dir: string; identity: string }, signer: IssuedCertificate, bundle: string): Promise<void> => {
      const leaf = await issueLeaf(signer, host.identity, 3_600_000);
      writeFileSync(join(host.dir, 'ca.pem.tmp'), bundle);
      writeFileSync(join(host.dir, 'key.pem.tmp'), leaf.keyPem);
      writeFileSync(join(host.dir, 'cert.pem.tmp'), leaf.certPem);
      // Atomic replacement, as configuration management does it (a reload must never read half a file).
      const { renameSync } = await import('node:fs');
      renameSync(join(host.dir, 'ca.pem.tmp'), join(host.dir, 'ca.pem'));
      renameSync(join(host.dir, 'key.pem.tmp'), join(host.dir, 'key.pem'));
      renameSync(join(host.dir, 'cert.pem.tmp'), join(host.dir, 'cert.pem'));
    };
    try {
      await new Promise((r) => setTimeout(r, 300));
      // 1. New leaves from the same CA on both hosts.
      let ma = A.logs.length;
      let mb = B.logs.length;
      await reissue(hostA, ca, ca.certPem);
      await reissue(hostB, ca, ca.certPem);
      await Promise.all([rotated(A, ma), rotated(B, mb)]);
      // 2. Root rotation: both bundles trust old and new roots …
      const newRoot = await newCa();
      const both = `${ca.certPem}${newRoot.certPem}`;
      ma = A.logs.length;
      mb = B.logs.length;
      await reissue(hostA, ca, both);
      await reissue(hostB, ca, both);
      await Promise.all([rotated(A, ma), rotated(B, mb)]);
      // … then leaves from the new root …
      ma = A.logs.length;
      mb = B.logs.length;
      await reissue(hostA, newRoot, both);
      await reissue(hostB, newRoot, both);
      await Promise.all([rotated(A, ma), rotated(B, mb)]);
      // … then the old root leaves the bundles.
      ma = A.logs.length;
      mb = B.logs.length;
      await reissue(hostA, newRoot, newRoot.certPem);
      await reissue(hostB, newRoot, newRoot.certPem);
      await Promise.all([rotated(A, ma), rotated(B, mb)]);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    }
    assert.deepEqual(failures, [], 'no request failed during the rotations');
    assert.ok(ok > 100, `load ran: ${ok} requests`);
    // A bad pair (cert from the new root, key from elsewhere) is rejected; the old one keeps serving.
    const mark = B.logs.length;
    const stray = await issueLeaf(ca, hostB.identity, 3_600_000);
    writeFileSync(join(hostB.dir, 'key.pem'), stray.keyPem);
    await B.waitForLog((l) => l['event'] === 'tls_rejected', 10_000, mark);
    assert.equal((await request(A.outbound, { headers: { host: 'web' } })).status, 200);
  });
});

describe('inbound backpressure across hosts', () => {
  it('sheds an overloaded local service with 503 + x-meshd-overloaded, and the caller’s meshd ejects that host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-shed-'));
    const ca = await newCa();
    const a = await writeHost(dir, 'a', ca, ca.certPem);
    const b = await writeHost(dir, 'b', ca, ca.certPem);
    const c = await writeHost(dir, 'c', ca, ca.certPem);
    const slow = await startBackend((_req, res, self) =>
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ port: self.port }));
      }, 200),
    );
    const fast = await startBackend((_req, res, self) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ port: self.port }));
    });
    // B fronts a slow app with a tight limit; C fronts a fast one.
    const B = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(b.dir)}
local:
  api: { target: ${slow.address}, concurrency: { adaptive: true, initialLimit: 2, minLimit: 1, maxLimit: 2, queue: { size: 0 } } }
`);
    const C = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(c.dir)}
local:
  api: { target: ${fast.address} }
`);
    const [inB, inC] = [await inboundOf(B), await inboundOf(C)];
    const A = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(a.dir)}
services:
  api:
    endpoints: [ { address: ${inB}, identity: ${b.identity} }, { address: ${inC}, identity: ${c.identity} } ]
    balancer: { algorithm: round-robin }
    retries: { attempts: 1 }
`);
    try {
      // Round robin sends B four of eight concurrent calls: two over its limit, shed with the header.
      const burst = await Promise.all(Array.from({ length: 8 }, () => request(A.outbound, { headers: { host: 'api' } })));
      const shed = burst.filter((r) => r.status === 503);
      assert.ok(shed.length >= 1 && shed.every((r) => r.headers['x-meshd-error'] === 'overloaded'), JSON.stringify(burst.map((r) => r.status)));
      const line = await A.waitForLog((l) => l['event'] === 'eject' && l['reason'] === 'overloaded', 10_000);
      assert.equal(line['endpoint'], inB);
      const metrics = (await request(B.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_feedback_decisions_total', { service: 'local:api', decision: 'shed' }) >= 1);
      // While B is out, A's callers are served by C.
      const after = await Promise.all(Array.from({ length: 6 }, () => request(A.outbound, { headers: { host: 'api' } })));
      assert.ok(after.every((r) => r.status === 200));
    } finally {
      await A.stop();
      await Promise.all([B.stop(), C.stop()]);
      await Promise.all([slow.close(), fast.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('certificate validity and readiness', () => {
  it('reports not ready, and says so loudly, when its certificate has expired', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-expired-'));
    const ca = await newCa();
    const host = await writeHost(dir, 'old', ca, ca.certPem, { now: new Date(Date.now() - 48 * 3_600_000), ttlMs: 3_600_000 });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(host.dir)}
`);
    try {
      const ready = await request(meshd.admin, { path: '/readyz' });
      assert.equal(ready.status, 503);
      assert.equal((ready.json() as { checks: { certificateValid: boolean } }).checks.certificateValid, false);
      await meshd.waitForLog((l) => l.msg.startsWith('certificate EXPIRED'));
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_certificate_expiry_seconds', { identity: host.identity }) < 0);
    } finally {
      await meshd.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start on unusable TLS material, naming the problem', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-badtls-'));
    const ca = await newCa();
    const other = await newCa();
    const host = await writeHost(dir, 'x', ca, other.certPem); // chains to a root the bundle lacks
    const { runMeshd } = await import('../helpers/daemon.ts');
    const config = join(dir, 'meshd.yaml');
    writeFileSync(config, `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\ninbound: { listen: 127.0.0.1:0 }\n${tlsBlock(host.dir)}\n`);
    const result = await runMeshd(['run', '--config', config]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /not signed by any certificate in the trust bundle/);
    writeFileSync(join(host.dir, 'key.pem'), 'garbage');
    const garbage = await runMeshd(['run', '--config', config]);
    assert.equal(garbage.code, 1);
    assert.match(garbage.stderr, /key/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('certificate chains and rotation checks', () => {
  it('serves and verifies chains through an intermediate CA; refuses to rotate to an expired or not-yet-valid leaf, and takes the latter once valid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-chain-'));
    const root = await newCa();
    const intermediate = await createIntermediateCa(root, `${DOMAIN} issuing CA`, 30 * 86_400_000);
    // Host B's certificate file is what cert-manager writes: the leaf, then the intermediate; its bundle holds only the root.
    const writeChained = (name: string, leaf: IssuedCertificate): Promise<void> => {
      writeFileSync(join(dir, name, 'key.pem.tmp'), leaf.keyPem);
      writeFileSync(join(dir, name, 'cert.pem.tmp'), `${leaf.certPem}${intermediate.certPem}`);
      renameSync(join(dir, name, 'key.pem.tmp'), join(dir, name, 'key.pem'));
      renameSync(join(dir, name, 'cert.pem.tmp'), join(dir, name, 'cert.pem'));
      return Promise.resolve();
    };
    const hostA = await writeHost(dir, 'a', root, root.certPem);
    const hostB = await writeHost(dir, 'b', intermediate, root.certPem);
    await writeChained('b', await issueLeaf(intermediate, hostB.identity, 3_600_000));
    const web = await startBackend();
    const B = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostB.dir)}
local:
  web: { target: ${web.address}, allow: [ "spiffe://${DOMAIN}/host/*" ] }
`);
    const bInbound = await inboundOf(B);
    const A = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostA.dir)}
services:
  web: { endpoints: [ { address: ${bInbound}, identity: ${hostB.identity} } ] }
local:
  web: { target: ${web.address}, allow: [ "spiffe://${DOMAIN}/host/*" ] }
`);
    try {
      const aInbound = await inboundOf(A);
      // A (trusting the root only) verifies B's chain as a server …
      const ab = await request(A.outbound, { headers: { host: 'web' } });
      assert.equal(ab.status, 200);
      assert.equal((ab.json() as { headers: Record<string, string> }).headers['x-meshd-peer-identity'], hostA.identity);
      // … and A's inbound verifies B's chain as a client (B calls A).
      const ba = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostB.dir)}
services:
  web: { endpoints: [ { address: ${aInbound}, identity: ${hostA.identity} } ] }
`);
      try {
        const res = await request(ba.outbound, { headers: { host: 'web' } });
        assert.equal(res.status, 200);
        assert.equal((res.json() as { headers: Record<string, string> }).headers['x-meshd-peer-identity'], hostB.identity);
      } finally {
        await ba.stop();
      }
      // openssl, trusting only the root, sees the whole chain and verifies it.
      const [host, port] = splitAddress(bInbound);
      const s = await run(
        'openssl',
        [
          's_client',
          '-connect',
          `${host}:${port}`,
          '-CAfile',
          join(hostA.dir, 'ca.pem'),
          '-cert',
          join(hostA.dir, 'cert.pem'),
          '-key',
          join(hostA.dir, 'key.pem'),
          '-verify_return_error',
          '-showcerts',
        ],
        'Q\n',
      );
      assert.match(s.out, /Verify return code: 0 \(ok\)/);
      assert.equal(s.out.match(/-----BEGIN CERTIFICATE-----/g)?.length, 2, 'leaf and intermediate presented');

      const fingerprintOf = async (): Promise<string> =>
        ((await request(B.admin, { path: '/debug/state' })).json() as { tls: { fingerprint: string } }).tls.fingerprint;
      const serving = await fingerprintOf();
      // An expired leaf is refused; the current one keeps serving.
      let mark = B.logs.length;
      await writeChained('b', await issueLeaf(intermediate, hostB.identity, 3_600_000, new Date(Date.now() - 3 * 3_600_000)));
      const expired = await B.waitForLog((l) => l['event'] === 'tls_rejected', 10_000, mark);
      assert.match(String(expired['reason']), /expired at/);
      assert.equal(await fingerprintOf(), serving);
      assert.equal((await request(A.outbound, { headers: { host: 'web' } })).status, 200);
      // A leaf valid from 3 s on is refused now, and taken by itself once it is valid.
      mark = B.logs.length;
      await writeChained('b', await issueLeaf(intermediate, hostB.identity, 3_600_000, new Date(Date.now() + 63_000)));
      // (The expired leaf may be rejected once more first: its files changed in more than one write.)
      const early = await B.waitForLog((l) => l['event'] === 'tls_rejected' && !/expired at/.test(String(l['reason'])), 10_000, mark);
      assert.match(String(early['reason']), /not valid before/);
      assert.equal(await fingerprintOf(), serving);
      await B.waitForLog((l) => l['event'] === 'tls_rotated', 15_000, mark);
      assert.notEqual(await fingerprintOf(), serving);
      assert.equal((await request(A.outbound, { headers: { host: 'web' } })).status, 200);
    } finally {
      await A.stop();
      await B.stop();
      await web.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
