/**
 * A stand-in for a Consul agent's HTTP API, as far as health-based discovery
 * uses it (https://developer.hashicorp.com/consul/api-docs/health and
 * .../api-docs/features/blocking): GET /v1/health/service/:name with
 * `passing`, `tag`, `dc`, `index` and `wait`; a query whose index is current
 * blocks until the catalog changes or the wait ends; every answer carries
 * X-Consul-Index; an ACL token is checked when one is set. The entries have
 * the shape of the documentation's sample answer. The test changes the
 * catalog, moves the index backwards, makes the agent fail or hang.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ConsulInstance {
  node: string;
  nodeAddress: string;
  /** Empty: the node's address is the service's (Consul's convention). */
  address?: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  weight?: number;
  /** The service check's status. */
  status?: 'passing' | 'warning' | 'critical';
}

export interface FakeConsul {
  readonly address: string;
  /** Queries received: path and query string. */
  readonly queries: string[];
  /** Replaces a service's instances; the index moves forward and blocked queries answer. */
  set(service: string, instances: ConsulInstance[]): void;
  /** Sets the index to `index` (backwards: a restored snapshot) and answers blocked queries. */
  setIndex(index: number): void;
  /** 'fail': 500 to every query; 'hang': accept and never answer; 'ok': normal. */
  mode: 'ok' | 'fail' | 'hang';
  /** When set, queries need this X-Consul-Token. */
  token: string | undefined;
  close(): Promise<void>;
}

export async function startFakeConsul(): Promise<FakeConsul> {
  const catalog = new Map<string, ConsulInstance[]>();
  let index = 10;
  const waiting = new Set<() => void>();
  const sockets = new Set<Socket>();
  const release = (): void => {
    for (const w of [...waiting]) w();
  };
  const state: FakeConsul = {
    address: '',
    queries: [],
    mode: 'ok',
    token: undefined,
    set: (service, instances) => {
      catalog.set(service, instances);
      index++;
      release();
    },
    setIndex: (next) => {
      index = next;
      release();
    },
    close: async () => {
      release();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const entries = (service: string, url: URL): unknown[] =>
    (catalog.get(service) ?? [])
      .filter((i) => url.searchParams.get('passing') === null || (i.status ?? 'passing') === 'passing')
      .filter((i) => url.searchParams.get('tag') === null || (i.tags ?? []).includes(url.searchParams.get('tag')!))
      .map((i) => ({
        Node: {
          ID: `id-${i.node}`,
          Node: i.node,
          Address: i.nodeAddress,
          Datacenter: 'dc1',
          TaggedAddresses: { lan: i.nodeAddress, wan: i.nodeAddress },
          Meta: { 'consul-network-segment': '' },
        },
        Service: {
          ID: `${service}-${i.node}`,
          Service: service,
          Tags: i.tags ?? [],
          Address: i.address ?? '',
          Meta: i.meta ?? {},
          Port: i.port,
          Weights: { Passing: i.weight ?? 1, Warning: 1 },
          EnableTagOverride: false,
          Namespace: 'default',
        },
        Checks: [
          { Node: i.node, CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', ServiceID: '', ServiceName: '' },
          {
            Node: i.node,
            CheckID: `service:${service}-${i.node}`,
            Name: `Service '${service}' check`,
            Status: i.status ?? 'passing',
            ServiceID: `${service}-${i.node}`,
            ServiceName: service,
          },
        ],
      }));

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://consul');
    state.queries.push(`${url.pathname}${url.search}`);
    if (state.mode === 'hang') return; // the socket stays open, no answer
    if (state.mode === 'fail') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('rpc error making call: No cluster leader');
      return;
    }
    if (state.token !== undefined && req.headers['x-consul-token'] !== state.token) {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('ACL not found');
      return;
    }
    const match = /^\/v1\/health\/service\/([^/]+)$/.exec(url.pathname);
    if (match === null) {
      res.writeHead(404);
      res.end();
      return;
    }
    const service = decodeURIComponent(match[1]!);
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-consul-index': String(index), 'x-consul-knownleader': 'true', 'x-consul-lastcontact': '0' });
      res.end(JSON.stringify(entries(service, url)));
    };
    const asked = Number(url.searchParams.get('index') ?? '0');
    if (asked > 0 && asked === index) {
      // Blocking query: answer on the next change or when the wait is over.
      const waitS = Number((url.searchParams.get('wait') ?? '300s').replace(/s$/, ''));
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        waiting.delete(finish);
        clearTimeout(timer);
        answer();
      };
      const timer = setTimeout(finish, waitS * 1000);
      waiting.add(finish);
      res.once('close', () => {
        waiting.delete(finish);
        clearTimeout(timer);
      });
      return;
    }
    answer();
  };

  const server = createServer(handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (state as { address: string }).address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}
