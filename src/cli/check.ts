/** `meshd check --config FILE`: validate without starting anything. */
import { readFile } from 'node:fs/promises';
import { loadConfigFile } from '../config/load.ts';
import { ConfigError, formatProblems } from '../errors.ts';

export async function checkCommand(path: string): Promise<number> {
  try {
    const config = await loadConfigFile(path, (p) => readFile(p, 'utf8'));
    process.stdout.write(`${path}: ok (${config.services.size} service(s))\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${path}: invalid config, ${err.problems.length} problem(s):\n${formatProblems(path, err.problems)}\n`);
    return 1;
  }
}
