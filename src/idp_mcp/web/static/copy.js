// The copy button of a secret shown once: revealed only where the clipboard can be written; otherwise the read-only
// box next to it stays the way to copy the value. The page's policy allows this file and no inline script.
"use strict";
for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.status);
  if (!field || !status || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(field.value);
      status.textContent = "Copied.";
    } catch {
      field.select();
      status.textContent = "Could not copy: the secret is selected, copy it with your keyboard.";
    }
  });
}
