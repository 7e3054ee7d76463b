/**
 * Originating mTLS to other meshd hosts: this host's certificate, the trust
 * bundle, and a check that the server's URI SAN is exactly the identity
 * discovery promised for that endpoint (anything else is a failed connect).
 * Each new connection takes the material in force (rotation); open ones are
 * left alone.
 */
import { connect as tlsConnect, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { TlsMaterial } from './material.ts';
import { peerIdentity } from '../identity/spiffe.ts';
import type { TlsState, TlsVersion } from './tls-state.ts';

/** ALPN protocol of raw TCP carried over the mTLS hop; the SNI names the local service. */
export const TCP_ALPN = 'meshd-tcp';

/**
 * ALPN protocol of raw TCP to a pod behind another node's meshd (Kubernetes mesh mode): the first
 * line inside the encrypted stream names the Service, the pod and the caller (service/pod-preamble.ts),
 * so none of it travels in the clear SNI.
 */
export const POD_TCP_ALPN = 'meshd-pod-tcp';

export function identityMismatch(expected: string, cert: PeerCertificate): Error | undefined {
  const actual = peerIdentity(cert);
  if (actual === expected) return undefined;
  return Object.assign(new Error(`the server presented identity ${actual ?? '(none)'} instead of ${expected}`), { code: 'ERR_MESHD_IDENTITY_MISMATCH' });
}

/** What a connection to another meshd presents and checks: this host's certificate, the bundle, the peer's identity. */
export interface PeerTlsOptions {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly minVersion: TlsVersion;
  readonly checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
}

function clientOptions(m: TlsMaterial, state: TlsState, expected: string): PeerTlsOptions {
  return {
    cert: m.certPem,
    key: m.keyPem,
    ca: m.caPem,
    minVersion: state.settings.minVersion,
    // The chain is verified against the bundle; the name check is the SPIFFE identity, not DNS.
    checkServerIdentity: (_host, cert) => identityMismatch(expected, cert),
  };
}

export class MeshTlsClient {
  private readonly state: TlsState;

  constructor(state: TlsState) {
    this.state = state;
  }

  /** The material in force; a new object after each rotation. */
  get material(): TlsMaterial {
    return this.state.current;
  }

  /**
   * TLS settings for a connection to a meshd that must present `identity`, with the material in
   * force now (HTTP pools, WebSocket upgrades and health checks, which make their own connections).
   */
  connectionOptions(identity: string): PeerTlsOptions {
    return clientOptions(this.state.current, this.state, identity);
  }

  /** A TLS connection for raw TCP to the `service` on a meshd that must present `identity`. */
  connectTcp(host: string, port: number, service: string, identity: string): TLSSocket {
    return tlsConnect(halfOpen({ host, port, servername: service, ALPNProtocols: [TCP_ALPN], ...clientOptions(this.state.current, this.state, identity) }));
  }

  /** A TLS connection for raw TCP to a pod behind the meshd at host:port, which must present `identity`. */
  connectPodTcp(host: string, port: number, identity: string): TLSSocket {
    return tlsConnect(halfOpen({ host, port, ALPNProtocols: [POD_TCP_ALPN], ...clientOptions(this.state.current, this.state, identity) }));
  }
}

/**
 * Raw TCP passes half-closes on: a caller done sending still reads the rest of the answer. Node's
 * tls.connect honours `allowHalfOpen` (it is a net.Socket option) though its types omit it.
 */
function halfOpen(options: ConnectionOptions): ConnectionOptions {
  return Object.assign(options, { allowHalfOpen: true });
}
