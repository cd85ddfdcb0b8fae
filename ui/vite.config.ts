import { defineConfig } from "vite";

// The UI is served from ui/dist by the Tauri shell (custom protocol); the
// dev server is only for working on the UI alone.
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.ts"],
  },
});
