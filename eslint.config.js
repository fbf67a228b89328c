// Lint rules that keep the process boundaries visible (see ARCHITECTURE.md):
// the engine never imports Electron, and only engine/runtime talks to onnxruntime-node.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const noElectron = {
  name: 'electron',
  message: 'electron/engine is plain Node: it must not import Electron.',
};
const noOnnxRuntime = {
  name: 'onnxruntime-node',
  message: 'Only electron/engine/runtime/ may import onnxruntime-node.',
};

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      'out/**',
      'release/**',
      'models/factory/.venv/**',
      'models/factory/.cache/**',
      '.cache/**',
      'renderer/dist/**',
      'test/.tmp/**',
      'bench/.tmp/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-imports': ['error', { paths: [noOnnxRuntime] }],
    },
  },
  {
    files: ['electron/engine/**/*.ts'],
    ignores: ['electron/engine/runtime/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [noElectron, noOnnxRuntime],
          patterns: [{ group: ['electron/*'], message: noElectron.message }],
        },
      ],
    },
  },
  {
    files: ['electron/engine/runtime/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [noElectron], patterns: [{ group: ['electron/*'], message: noElectron.message }] },
      ],
    },
  },
  {
    files: ['electron/main/**/*.ts', 'electron/preload/**/*.ts', 'test/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
