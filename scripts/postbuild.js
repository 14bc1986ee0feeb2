#!/usr/bin/env node
// After tsc: make the CLI entry executable (tsc keeps the shebang line from the source).
'use strict';
const { chmodSync, existsSync } = require('node:fs');
const { join } = require('node:path');
const bin = join(__dirname, '..', 'dist', 'client', 'cli', 'main.js');
if (existsSync(bin)) chmodSync(bin, 0o755);
