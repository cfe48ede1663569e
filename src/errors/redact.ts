/**
 * Backend log lines end up in error messages (a failed load shows the last ones), and backends print
 * the model's full path. A client must never learn the operator's folders from an error: every
 * absolute path is cut down to its last component.
 */
const ABSOLUTE_PATH = /(?<![\w.:/-])\/(?:[^\s'"`:,;()[\]{}<>/]+\/)+([^\s'"`:,;()[\]{}<>/]*)/g;

export function redactPaths(text: string): string {
  return text.replace(ABSOLUTE_PATH, (_whole, last: string) => (last ? `…/${last}` : "…/"));
}
