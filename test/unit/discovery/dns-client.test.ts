/**
 * The DNS codec on hand-built messages: queries as RFC 1035 lays them out,
 * answers with compressed names, SRV, AAAA (shortest form) and the SOA of a
 * negative answer, and malformed answers refused rather than misread.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMessage, DnsError, encodeQuery, RR } from '../../../src/discovery/dns-client.ts';

/** A name in wire form. */
function name(text: string): Buffer {
  const parts = text.split('.').flatMap((label) => [Buffer.from([label.length]), Buffer.from(label)]);
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function record(owner: Buffer, type: number, ttl: number, data: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(data.length, 8);
  return Buffer.concat([owner, fixed, data]);
}

function message(flags: number, question: Buffer, answers: Buffer[], authority: Buffer[] = [], additional: Buffer[] = []): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(0x1234, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authority.length, 8);
  header.writeUInt16BE(additional.length, 10);
  return Buffer.concat([header, question, Buffer.from([0, 33, 0, 1]), ...answers, ...authority, ...additional]);
}

describe('DNS codec', () => {
  it('encodes a recursive query for one name and type', () => {
    const q = encodeQuery(0xbeef, 'users.example.', RR.SRV);
    assert.equal(q.readUInt16BE(0), 0xbeef);
    assert.equal(q.readUInt16BE(2), 0x0100, 'RD set');
    assert.equal(q.readUInt16BE(4), 1);
    assert.deepEqual(q.subarray(12, 12 + 15), name('users.example'));
    assert.equal(q.readUInt16BE(q.length - 4), RR.SRV);
    assert.throws(() => encodeQuery(1, `${'x'.repeat(64)}.example`, RR.A), DnsError);
  });

  it('decodes SRV answers with compressed targets and the addresses in the additional section', () => {
    const question = name('_http._tcp.users.test');
    const pointer = Buffer.from([0xc0, 12]); // the question's name, at offset 12
    const srvData = (priority: number, weight: number, port: number, target: string): Buffer => {
      const fixed = Buffer.alloc(6);
      fixed.writeUInt16BE(priority, 0);
      fixed.writeUInt16BE(weight, 2);
      fixed.writeUInt16BE(port, 4);
      return Buffer.concat([fixed, name(target)]);
    };
    const msg = message(
      0x8180,
      question,
      [record(pointer, RR.SRV, 30, srvData(0, 5, 8080, 'a.users.test')), record(pointer, RR.SRV, 10, srvData(1, 0, 9090, 'b.users.test'))],
      [],
      [
        record(name('a.users.test'), RR.A, 20, Buffer.from([10, 0, 0, 7])),
        record(name('a.users.test'), RR.AAAA, 20, Buffer.from('20010db8000000000000000000000001', 'hex')),
      ],
    );
    const decoded = decodeMessage(msg);
    assert.equal(decoded.rcode, 0);
    assert.deepEqual(decoded.answers, [
      { type: 33, name: '_http._tcp.users.test', ttl: 30, priority: 0, weight: 5, port: 8080, target: 'a.users.test' },
      { type: 33, name: '_http._tcp.users.test', ttl: 10, priority: 1, weight: 0, port: 9090, target: 'b.users.test' },
    ]);
    assert.deepEqual(decoded.additional, [
      { type: 1, name: 'a.users.test', ttl: 20, address: '10.0.0.7' },
      { type: 28, name: 'a.users.test', ttl: 20, address: '2001:db8::1' },
    ]);
  });

  it('reads the SOA minimum of a negative answer, and refuses answers that run past their end', () => {
    const soaData = Buffer.concat([name('ns.test'), name('admin.test'), Buffer.alloc(20)]);
    soaData.writeUInt32BE(45, soaData.length - 4);
    const nx = message(0x8183, name('nope.test'), [], [record(name('test'), RR.SOA, 300, soaData)]);
    const decoded = decodeMessage(nx);
    assert.equal(decoded.rcode, 3, 'NXDOMAIN');
    assert.deepEqual(decoded.authority, [{ type: 6, name: 'test', ttl: 300, minimum: 45 }]);
    assert.throws(() => decodeMessage(nx.subarray(0, nx.length - 5)), DnsError);
    assert.throws(() => decodeMessage(Buffer.alloc(5)), DnsError);
    // A compression pointer to itself must not loop forever.
    const loop = message(0x8180, Buffer.from([0xc0, 12]), []);
    assert.throws(() => decodeMessage(loop), DnsError);
  });
});
