import { defineConfig } from "vitest/config";

// Unit tests only: e2e/ runs under node --test against a real server (TestWebSDK).
export default defineConfig({ test: { include: ["test/**/*.test.ts"], testTimeout: 10000 } });
