import { render } from "preact";
import { loadConfig, signedIn } from "./auth";
import { App, SignIn } from "./App";
import "./style.css";

async function start() {
  const root = document.getElementById("app")!;
  root.textContent = ""; // the loading line: Preact renders beside what it did not create
  try {
    await loadConfig();
    render((await signedIn()) ? <App /> : <SignIn />, root);
  } catch (e) {
    render(<SignIn error={e instanceof Error ? e.message : String(e)} />, root);
  }
}

void start();
