// ESLint flat config: `npm run lint`. Type-aware rules from typescript-eslint over every file tsconfig.json
// compiles, plus the plain recommended rules over the build and CI scripts (plain JavaScript).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      // Patch targets and apps that tests and examples load as data: compiled on their own, not part of the build.
      'test/fixtures/**',
      'examples/*/**',
      '.livepatch/**',
    ],
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: {
      reportUnusedDisableDirectives: 'error',
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() return promises the runner itself awaits and reports on.
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // The tree marks indexed reads with `!` on purpose (an index can be out of range; tsconfig.json does not set
      // noUncheckedIndexedAccess, so the compiler cannot say so), and this rule would strip that marker.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // An async function that implements a Promise-returning interface keeps a throw inside it a rejection;
      // dropping `async` where nothing is awaited would turn those into synchronous throws.
      '@typescript-eslint/require-await': 'off',
      // `import x = require('...')` is TypeScript's typed CommonJS import; plain require() calls (lazy loads) still
      // need a reasoned disable comment.
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
      // A timer or handle assigned once, after the closures that clear it are set up, stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        // A leading underscore marks a parameter or binding kept for its position (callbacks, destructuring).
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Tests, benchmarks and examples read wire replies, CLI --json output and app responses as parsed JSON (`any`)
    // and assert on their shape: a wrong shape fails the assertion, so the unsafe-any rules would only add casts.
    // The rules stay on for shared/, server/ and client/, the code that ships.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'examples/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // Tests require() the compiled app and engine modules at run time, after the agent is installed.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // These files capture built-in and framework methods (Function.prototype.toString, Server#listen, descriptor
    // getters, ...) before an app can replace them, and call them later with Reflect.apply or .call: the unbound
    // use is the point, and each call site supplies `this`.
    files: [
      'server/repl/safe-render.ts',
      'server/engine/canon.ts',
      'server/engine/dispatch.ts',
      'server/engine/health-errors.ts',
      'server/cluster/drain.ts',
      'bench/restart.ts',
      'bench/zero-downtime.ts',
      'examples/bench-kit.ts',
    ],
    rules: { '@typescript-eslint/unbound-method': 'off' },
  },
  {
    files: ['scripts/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
        __filename: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
      },
    },
  },
);
