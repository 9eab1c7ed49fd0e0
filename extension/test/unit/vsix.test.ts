// The packaged .vsix (built by `make package`, which `npm run package` calls): dist in, sources, tests and
// node_modules out. Reads the zip's central directory directly (no unzip tool needed).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
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
    expect(names.filter((n) => /\/\.stamp-/.test(n))).toEqual([]);
  });

  it.skipIf(!existsSync(vsix))('ships every built file of dist/ (an asset the .vscodeignore allowlist misses would be left out silently)', () => {
    const names = new Set(zipEntries(readFileSync(vsix)));
    const dist = resolve(__dirname, '../../dist');
    const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
    const built = walk(dist)
      .map((f) => `extension/dist/${relative(dist, f).split('\\').join('/')}`)
      .filter((n) => !/\/\.stamp-|\.map$/.test(n));
    expect(built.filter((n) => !names.has(n))).toEqual([]);
  });

  it.skipIf(!existsSync(vsix))('ships exactly one server wheel where src/server.ts looks for it', () => {
    const names = zipEntries(readFileSync(vsix));
    const wheels = names.filter((n) => /modelbonsai-[^/]*\.whl$/.test(n));
    expect(wheels).toHaveLength(1);
    expect(wheels[0]).toMatch(/^extension\/dist\/python\/modelbonsai-\d+(\.\d+)*-py3-none-any\.whl$/);
  });
});

// The server wheel that the .vsix ships (built by the Makefile from ../server into dist/python).
const wheelDir = resolve(__dirname, '../../dist/python');
const wheels = existsSync(wheelDir) ? readdirSync(wheelDir).filter((n) => n.endsWith('.whl')) : [];
const repo = resolve(__dirname, '../../..');
const venvPython = join(repo, '.venv/bin/python');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (n === '__pycache__' || n.endsWith('.egg-info')) return [];
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('the server wheel', () => {
  it.skipIf(!wheels.length)('is one wheel of the version in pyproject.toml', () => {
    expect(wheels).toHaveLength(1);
    const version = /^version\s*=\s*"([^"]+)"/m.exec(readFileSync(join(repo, 'pyproject.toml'), 'utf8'))?.[1];
    expect(wheels[0]).toBe(`modelbonsai-${version}-py3-none-any.whl`);
  });

  it.skipIf(!wheels.length)('holds exactly the package sources (run make package when this fails: the wheel is stale)', () => {
    const names = zipEntries(readFileSync(join(wheelDir, wheels[0]!)));
    const packed = names.filter((n) => n.startsWith('modelbonsai/')).sort();
    const sources = filesUnder(join(repo, 'server/modelbonsai'))
      .map((p) => `modelbonsai/${relative(join(repo, 'server/modelbonsai'), p).split('\\').join('/')}`)
      .filter((n) => /\.py$|\.json$|\.sql$|\.html$|py\.typed$/.test(n)) // package-data (pyproject)
      .sort();
    expect(packed).toEqual(sources);
    const dist = names.filter((n) => n.includes('.dist-info/')).map((n) => n.replace(/^[^/]*\//, ''));
    expect(dist).toEqual(expect.arrayContaining(['METADATA', 'entry_points.txt', 'RECORD']));
  });

  it.skipIf(!wheels.length || !existsSync(venvPython))('installs with pip and imports from where it was installed', () => {
    const target = mkdtempSync(join(tmpdir(), 'bonsai-wheel-'));
    try {
      execFileSync(venvPython, ['-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index', '--target', target, join(wheelDir, wheels[0]!)], { timeout: 60_000 });
      const out = execFileSync(
        venvPython,
        ['-c', 'import modelbonsai, importlib.resources as r, sys; sys.stdout.write(modelbonsai.__file__ + "|" + str((r.files("modelbonsai") / "schema" / "bonsai.schema.json").is_file()))'],
        { env: { ...process.env, PYTHONPATH: target }, encoding: 'utf8', timeout: 60_000 },
      );
      expect(out).toBe(`${join(target, 'modelbonsai', '__init__.py')}|True`);
      expect(readFileSync(join(target, 'bin', 'bonsai'), 'utf8')).toMatch(/from modelbonsai\.cli import main/);
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });
});
