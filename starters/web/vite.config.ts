// The page is served by the starter API at /ui/ (starters/api/routers/web.py) with a strict
// Content-Security-Policy: one module script and one stylesheet from the API's origin, nothing inline.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0, // no data: URLs for scripts or styles
    sourcemap: false,
  },
});
