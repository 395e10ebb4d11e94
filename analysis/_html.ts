/**
 * What both reports' pages share (a run's, analysis/report/, and a comparison's,
 * analysis/compare/report.ts): escaping, and the base of the page's style.
 *
 * @module
 */

/** The style both reports start from: a centred column, plain tables, charts that fit it. */
export const BASE_STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f4f4f4}td.num{text-align:right}.muted{color:#777}
figure{margin:1em 0}pre{background:#f8f8f8;padding:.5em}
figure svg{max-width:100%;height:auto}
`;

/** C0 control characters but tab, line feed and carriage return. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

/**
 * `text` safe as HTML text or as a double-quoted attribute value (the only kind either page
 * writes, so an apostrophe stays as it is); control characters become their visible pictures
 * (U+2400…), so a completion's stray bytes show instead of vanishing.
 */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replace(
      CONTROL,
      (c) => String.fromCodePoint(c === "\u007f" ? 0x2421 : 0x2400 + c.charCodeAt(0)),
    );
}
