import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Extension-host modules import 'vscode', which exists only inside VS Code: tests get a mock.
    alias: {
      vscode: fileURLToPath(new URL('./test/unit/vscode.mock.ts', import.meta.url)),
      'vscode-languageclient/node': fileURLToPath(new URL('./test/unit/languageclient.mock.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/unit/**/*.test.ts'],
    environment: 'node',
    pool: 'threads',
    poolOptions: { threads: { maxThreads: 2, minThreads: 1 } },
    testTimeout: 20_000,
  },
});
