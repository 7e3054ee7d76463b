/**
 * A real gRPC server and client (@grpc/grpc-js) with a JSON codec, so the
 * tests need no .proto files: a unary method, /test.Echo/Say; a
 * client-streaming one, /test.Echo/Collect (answers once the caller ends);
 * and a bidirectional one, /test.Echo/Chat (echoes each message at once).
 */
import * as grpc from '@grpc/grpc-js';

const encode = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const decode = (buf: Buffer): unknown => JSON.parse(buf.toString());

export const SAY = '/test.Echo/Say';
export const COLLECT = '/test.Echo/Collect';
export const CHAT = '/test.Echo/Chat';

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
  Collect: {
    path: COLLECT,
    requestStream: true,
    responseStream: false,
    requestSerialize: encode,
    requestDeserialize: decode,
    responseSerialize: encode,
    responseDeserialize: decode,
  },
  Chat: {
    path: CHAT,
    requestStream: true,
    responseStream: true,
    requestSerialize: encode,
    requestDeserialize: decode,
    responseSerialize: encode,
    responseDeserialize: decode,
  },
};

export type SayHandler = (request: { text: string }, metadata: grpc.Metadata) => Promise<{ text: string }>;

/** `bind`: where to listen (default: a free loopback port). */
export async function startGrpcServer(
  handler: SayHandler,
  bind = '127.0.0.1:0',
): Promise<{ address: string; port: number; calls: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  const state = { address: '', port: 0, calls: 0, close: async () => {} };
  server.addService(definition, {
    Say: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, callback: grpc.sendUnaryData<{ text: string }>) => {
      state.calls++;
      handler(call.request, call.metadata).then(
        (reply) => callback(null, reply),
        // grpc-js answers with the error's code and details (see the handlers' throws).
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    },
    Collect: (call: grpc.ServerReadableStream<{ text: string }, { text: string }>, callback: grpc.sendUnaryData<{ text: string }>) => {
      state.calls++;
      const texts: string[] = [];
      call.on('data', (m: { text: string }) => texts.push(m.text));
      call.on('end', () => callback(null, { text: texts.join(',') }));
    },
    Chat: (call: grpc.ServerDuplexStream<{ text: string }, { text: string }>) => {
      state.calls++;
      call.on('data', (m: { text: string }) => call.write({ text: `echo:${m.text}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(bind, grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  );
  state.port = port;
  state.address = `${bind.slice(0, bind.lastIndexOf(':'))}:${port}`;
  state.close = () => new Promise((r) => server.tryShutdown(() => r()));
  return state;
}

export interface GrpcTestClient {
  say(text: string, deadlineMs?: number): Promise<{ text: string }>;
  /** A client-streaming call: sends the messages one by one, then ends; resolves with the answer. */
  collect(texts: string[], deadlineMs?: number): Promise<{ text: string }>;
  /** A bidirectional call: send one message, wait for its echo, send the next. */
  chat(deadlineMs?: number): { send(text: string): Promise<string>; end(): Promise<void> };
  close(): void;
}

/** A client that dials meshd and names the service in :authority. */
export function grpcClient(meshdAddress: string, service: string): GrpcTestClient {
  const client = new grpc.Client(meshdAddress, grpc.credentials.createInsecure(), { 'grpc.default_authority': service });
  const deserialize = (b: Buffer): { text: string } => decode(b) as { text: string };
  return {
    collect: (texts, deadlineMs = 5_000) =>
      new Promise((resolve, reject) => {
        const call = client.makeClientStreamRequest(COLLECT, encode, deserialize, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, reply) =>
          err !== null || reply === undefined ? reject(err ?? new Error('no reply')) : resolve(reply),
        );
        let i = 0;
        // Paced, as a real streaming caller is: the body arrives over time, not in one piece.
        const timer = setInterval(() => {
          if (i < texts.length) call.write({ text: texts[i++] });
          else {
            clearInterval(timer);
            call.end();
          }
        }, 20);
      }),
    chat: (deadlineMs = 5_000) => {
      const call = client.makeBidiStreamRequest(CHAT, encode, deserialize, new grpc.Metadata(), { deadline: Date.now() + deadlineMs });
      const waiting: { resolve: (t: string) => void; reject: (e: Error) => void }[] = [];
      call.on('data', (m: { text: string }) => waiting.shift()?.resolve(m.text));
      call.on('error', (err: Error) => {
        for (const w of waiting.splice(0)) w.reject(err);
      });
      return {
        send: (text) =>
          new Promise<string>((resolve, reject) => {
            waiting.push({ resolve, reject });
            call.write({ text });
          }),
        end: () =>
          new Promise<void>((resolve, reject) => {
            call.on('status', (status: grpc.StatusObject) =>
              status.code === grpc.status.OK ? resolve() : reject(new Error(`status ${status.code} ${status.details}`)),
            );
            call.end();
          }),
      };
    },
    say: (text, deadlineMs = 5_000) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          SAY,
          encode,
          (b: Buffer) => decode(b) as { text: string },
          { text },
          new grpc.Metadata(),
          { deadline: Date.now() + deadlineMs },
          (err, reply) => (err !== null || reply === undefined ? reject(err ?? new Error('no reply')) : resolve(reply)),
        );
      }),
    close: () => client.close(),
  };
}

export { grpc };
