// Parse each file given with Mermaid's own parser (mermaid.parse), headless:
// jsdom supplies the window mermaid's sanitiser expects; nothing is rendered.
// Prints "<file> ok <diagram type>" or "<file> ERROR <message>"; exit 1 on any error.
import { JSDOM } from "jsdom";
import fs from "node:fs";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(fs.readFileSync(file, "utf8"));
    console.log(`${file} ok ${result.diagramType}`);
  } catch (e) {
    failed = 1;
    console.log(`${file} ERROR ${String(e.message || e).split("\n").join(" | ")}`);
  }
}
process.exit(failed);
