/**
 * A stand-in for the Kubernetes API server, over HTTPS with bearer-token
 * authentication, speaking the real wire format for what meshd reads (Node
 * objects) plus the discovery documents kubectl asks for first, so that the
 * real kubectl can check it is faithful. Its certificate is made by openssl
 * for 127.0.0.1.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeNode {
  name: string;
  podCIDRs: string[];
}

export interface FakeKubeApi {
  url: string;
  token: string;
  caFile: string;
  tokenFile: string;
  /** Paths of the requests received, in order. */
  requests: string[];
  close(): Promise<void>;
}

export async function startFakeKubeApi(nodes: FakeNode[]): Promise<FakeKubeApi> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-fake-kube-'));
  const cert = join(dir, 'ca.crt');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=fake-kube-apiserver',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const token = 'test-service-account-token';
  const tokenFile = join(dir, 'token');
  execFileSync('sh', ['-c', `printf %s '${token}' > '${tokenFile}'`]);
  const requests: string[] = [];
  const json = (status: number, body: unknown): [number, string] => [status, JSON.stringify(body)];
  const statusBody = (code: number, reason: string, message: string): [number, string] =>
    json(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push(path);
    let answer: [number, string];
    if (req.headers.authorization !== `Bearer ${token}`) answer = statusBody(401, 'Unauthorized', 'Unauthorized');
    else if (path === '/version') answer = json(200, { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', platform: 'linux/amd64' });
    else if (path === '/api')
      answer = json(200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${(server.address() as AddressInfo).port}` }],
      });
    else if (path === '/apis') answer = json(200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
    else if (path === '/api/v1')
      answer = json(200, {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [{ name: 'nodes', singularName: 'node', namespaced: false, kind: 'Node', verbs: ['get', 'list', 'watch'], shortNames: ['no'] }],
      });
    else {
      const match = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
      const node = match === null ? undefined : nodes.find((n) => n.name === decodeURIComponent(match[1]!));
      if (match === null) answer = statusBody(404, 'NotFound', 'the server could not find the requested resource');
      else if (node === undefined) answer = statusBody(404, 'NotFound', `nodes "${decodeURIComponent(match[1]!)}" not found`);
      else
        answer = json(200, {
          kind: 'Node',
          apiVersion: 'v1',
          metadata: {
            name: node.name,
            uid: `uid-${node.name}`,
            resourceVersion: '1',
            creationTimestamp: '2026-12-01T00:00:00Z',
            labels: { 'kubernetes.io/hostname': node.name },
          },
          spec: { podCIDR: node.podCIDRs[0], podCIDRs: node.podCIDRs },
          status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] },
        });
    }
    res.writeHead(answer[0], { 'content-type': 'application/json' });
    res.end(answer[1]);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    token,
    caFile: cert,
    tokenFile,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          r();
        });
      }),
  };
}
