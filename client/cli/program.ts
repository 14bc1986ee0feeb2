/** Placeholder until the CLI lands: prints usage. */
export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('usage: livepatch <command> ...\n');
  return 2;
}
