// The packaged .vsix (built by `make package` / `npm run package`): dist in, sources, tests and
// node_modules out. Reads the zip's central directory directly (no unzip tool needed).
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const vsix = resolve(__dirname, '../../bonsai.vsix');

function zipEntries(buf: Buffer): string[] {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory entry ${i}`);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    names.push(buf.toString('utf8', p + 46, p + 46 + nameLen));
    p += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}

describe('bonsai.vsix', () => {
  it('exists (make package builds it)', () => {
    expect(existsSync(vsix), `${vsix} is missing: run make package`).toBe(true);
  });

  it.skipIf(!existsSync(vsix))('holds dist and no sources, tests or node_modules', () => {
    const names = zipEntries(readFileSync(vsix));
    for (const f of ['extension/package.json', 'extension/dist/extension.js', 'extension/dist/webview/modelMap.js', 'extension/dist/webview/behaviors.js', 'extension/dist/webview/layers.js', 'extension/dist/webview/base.css', 'extension/dist/codicons/codicon.css', 'extension/dist/codicons/codicon.ttf', 'extension/media/bonsai.svg']) {
      expect(names, f).toContain(f);
    }
    expect(names.some((n) => n.startsWith('extension/LICENSE'))).toBe(true);
    const bad = names.filter((n) => /(^|\/)(src|test|webview|node_modules)\//.test(n.replace(/^extension\/dist\/webview\//, 'extension/dist/wv/')) || /\.ts$|\.map$/.test(n));
    expect(bad).toEqual([]);
    const pkg = JSON.parse(readFileSync(resolve(__dirname, '../../package.json'), 'utf8')) as { main: string };
    expect(names).toContain(`extension/${pkg.main.replace(/^\.\//, '')}`);
  });
});
