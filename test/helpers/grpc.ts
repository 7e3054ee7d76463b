/**
 * A real gRPC server and client (@grpc/grpc-js) with a JSON codec, so the
 * tests need no .proto files: one unary method, /test.Echo/Say.
 */
import * as grpc from '@grpc/grpc-js';

const encode = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const decode = (buf: Buffer): unknown => JSON.parse(buf.toString());

export const SAY = '/test.Echo/Say';

const definition: grpc.ServiceDefinition = {
  Say: {
    path: SAY,
    requestStream: false,
    responseStream: false,
    requestSerialize: encode,
    requestDeserialize: decode,
    responseSerialize: encode,
    responseDeserialize: decode,
  },
};

export type SayHandler = (request: { text: string }, metadata: grpc.Metadata) => Promise<{ text: string }>;

export async function startGrpcServer(handler: SayHandler): Promise<{ address: string; port: number; calls: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  const state = { address: '', port: 0, calls: 0, close: async () => {} };
  server.addService(definition, {
    Say: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, callback: grpc.sendUnaryData<{ text: string }>) => {
      state.calls++;
      handler(call.request, call.metadata).then(
        (reply) => callback(null, reply),
        (err: Partial<grpc.StatusObject>) => callback(err),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  );
  state.port = port;
  state.address = `127.0.0.1:${port}`;
  state.close = () => new Promise((r) => server.tryShutdown(() => r()));
  return state;
}

/** A client that dials meshd and names the service in :authority. */
export function grpcClient(meshdAddress: string, service: string): { say(text: string, deadlineMs?: number): Promise<{ text: string }>; close(): void } {
  const client = new grpc.Client(meshdAddress, grpc.credentials.createInsecure(), { 'grpc.default_authority': service });
  return {
    say: (text, deadlineMs = 5_000) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(SAY, encode, (b: Buffer) => decode(b) as { text: string }, { text }, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, reply) =>
          err !== null || reply === undefined ? reject(err ?? new Error('no reply')) : resolve(reply),
        );
      }),
    close: () => client.close(),
  };
}

export { grpc };
