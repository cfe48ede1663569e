import assert from "node:assert/strict";
import { test } from "node:test";
import { RequestWindow } from "./request-window.js";

test("request window: max per client per window, the wait until its reset, other clients apart, quiet clients swept", () => {
  let now = 1_000_000;
  const window = new RequestWindow(3, 60_000, () => now);
  for (let i = 0; i < 3; i++) assert.equal(window.take("a"), 0);
  assert.equal(window.take("a"), 60, "refused for the whole window");
  now += 59_500;
  assert.equal(window.take("a"), 1, "never less than a second");
  assert.equal(window.take("b"), 0, "another client counts on its own");
  now += 500;
  assert.equal(window.take("a"), 0, "a new window");
  now += 120_000;
  window.take("c");
  assert.equal(window.size, 1, "expired windows are swept");
});
