/**
 * A calling pod's gRPC client (@grpc/grpc-js) for the multi-node tests, run
 * inside the pod's network namespace: one unary call, one client-streaming
 * call and one bidirectional exchange through its node's meshd, then one
 * JSON line with the answers (or the error).
 * Usage: pod-grpc.ts MESHD_HOST:PORT SERVICE
 */
import { grpcClient } from './grpc.ts';

const [target = '127.0.0.1:4140', service = 'greeter'] = process.argv.slice(2);
const client = grpcClient(target, service);
try {
  const unary = await client.say('hi');
  const collected = await client.collect(['a', 'b', 'c']);
  const chat = client.chat();
  const echoes = [await chat.send('x'), await chat.send('y')];
  await chat.end();
  process.stdout.write(`${JSON.stringify({ unary: unary.text, collected: collected.text, echoes })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
} finally {
  client.close();
}
