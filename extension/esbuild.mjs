// Bundles the extension host (dist/extension.js, CommonJS for VS Code's Node) and one browser
// bundle per webview panel (dist/webview/<panel>.js), and copies the codicon font and the
// shared stylesheet into dist/ so the .vsix needs no node_modules.
import { build, context } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes('--watch');
const production = !watch;

const panels = readdirSync(join(root, 'webview'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'webview', d.name, 'main.ts')))
  .map((d) => d.name);

const common = { bundle: true, sourcemap: production ? false : 'linked', minify: production, logLevel: 'warning', target: 'es2022' };

const configs = [
  {
    ...common,
    entryPoints: { extension: join(root, 'src/extension.ts') },
    outdir: join(root, 'dist'),
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode'],
  },
  {
    ...common,
    entryPoints: Object.fromEntries(panels.map((p) => [p, join(root, 'webview', p, 'main.ts')])),
    outdir: join(root, 'dist/webview'),
    platform: 'browser',
    format: 'iife',
  },
];

function copyAssets() {
  mkdirSync(join(root, 'dist/codicons'), { recursive: true });
  const codicons = join(root, 'node_modules/@vscode/codicons/dist');
  for (const f of ['codicon.css', 'codicon.ttf']) cpSync(join(codicons, f), join(root, 'dist/codicons', f));
  cpSync(join(root, 'webview/shared/base.css'), join(root, 'dist/webview/base.css'));
}

if (watch) {
  for (const c of configs) await (await context(c)).watch();
  copyAssets();
} else {
  await Promise.all(configs.map((c) => build(c)));
  copyAssets();
  console.log(`esbuild: dist/extension.js + webviews ${panels.join(', ')}`);
}
