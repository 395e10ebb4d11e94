/** The keys of verl's ppo_trainer.yaml at the pinned commit, as shipped with the exporter. */

const KEYS_FILE = new URL("../../../runtime/export/verl_ppo_trainer_keys.txt", import.meta.url);

/** verl's flattened configuration keys (the file's `dotted.key = default` lines). */
export function verlKeys(): Set<string> {
  const keys = new Set<string>();
  for (const line of Deno.readTextFileSync(KEYS_FILE).split("\n")) {
    const at = line.indexOf(" = ");
    if (!line.startsWith("#") && at > 0) keys.add(line.slice(0, at));
  }
  return keys;
}
