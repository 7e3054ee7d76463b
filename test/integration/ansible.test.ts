/**
 * The Ansible role, run for real against this machine into a scratch root
 * (connection local, no systemd to drive), twice: the second run changes
 * nothing. ansible-lint passes on the role and the playbooks.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runMeshd } from '../helpers/daemon.ts';
import { newCa, writeHost } from '../helpers/pki.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ANSIBLE = join(ROOT, 'ansible');

function sh(cmd: string, args: string[], cwd = ROOT, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(
      cmd,
      args,
      { cwd, timeout: 240_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', ...env } },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}` }),
    ),
  );
}

describe('ansible', () => {
  it('passes ansible-lint (production profile)', async () => {
    const lint = await sh('ansible-lint', ['--profile', 'production'], ANSIBLE);
    assert.equal(lint.code, 0, lint.out);
  });

  it('installs meshd into a scratch root, then changes nothing on a second run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-ansible-'));
    try {
      const archive = join(dir, 'meshd-0.1.0.tgz');
      const tar = await sh('tar', ['czf', archive, 'bin', 'src', 'systemd', 'package.json', 'package-lock.json']);
      assert.equal(tar.code, 0, tar.out);
      const ca = await newCa();
      const host = await writeHost(dir, 'web-1', ca, ca.certPem);
      const target = join(dir, 'root');
      const inventory = join(dir, 'inventory.ini');
      writeFileSync(inventory, `[meshd]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n`);
      const vars = join(dir, 'vars.json');
      writeFileSync(
        vars,
        JSON.stringify({
          ansible_become: false,
          meshd_root: target,
          meshd_release_archive: archive,
          meshd_manage_systemd: false,
          meshd_zone: 'a',
          meshd_metrics_listen: '0.0.0.0:9991',
          meshd_metrics_allow_from: ['192.0.2.0/24'],
          meshd_tls_cert_src: join(host.dir, 'cert.pem'),
          meshd_tls_key_src: join(host.dir, 'key.pem'),
          meshd_tls_ca_src: join(host.dir, 'ca.pem'),
          meshd_services: { users: { endpoints: [{ address: '192.0.2.7:4143', identity: 'spiffe://test.example/host/web-2' }] } },
          meshd_local: { web: { target: '127.0.0.1:8080', allow: ['spiffe://test.example/host/*'] } },
        }),
      );
      const play = (): Promise<{ code: number; out: string }> =>
        sh('ansible-playbook', ['-i', inventory, '-e', `@${vars}`, join(ANSIBLE, 'playbooks', 'site.yml')], ROOT, {
          ANSIBLE_ROLES_PATH: join(ANSIBLE, 'roles'),
        });
      const first = await play();
      assert.equal(first.code, 0, first.out.slice(-3000));
      assert.match(first.out, /localhost\s+: ok=\d+\s+changed=[1-9]/);
      const config = join(target, 'etc/meshd/meshd.yaml');
      const check = await runMeshd(['check', '--config', config]);
      assert.equal(check.code, 0, `${check.stderr}\n${readFileSync(config, 'utf8')}`);
      assert.match(readFileSync(config, 'utf8'), /^metrics:\n {2}listen: "0\.0\.0\.0:9991"\n {2}allowFrom: \["192\.0\.2\.0\/24"\]$/m);
      assert.equal(statSync(join(target, 'etc/meshd/tls/key.pem')).mode & 0o777, 0o640);
      assert.ok(lstatSync(join(target, 'opt/meshd/current')).isSymbolicLink());
      assert.equal(readlinkSync(join(target, 'opt/meshd/current')), 'releases/0.1.0');
      assert.match(readFileSync(join(target, 'etc/systemd/system/meshd.service'), 'utf8'), /Type=notify/);
      const second = await play();
      assert.equal(second.code, 0, second.out.slice(-3000));
      assert.match(second.out, /localhost\s+: ok=\d+\s+changed=0\s/, second.out.slice(-1500));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
