// Progressive enhancement only: every page reads and works without this file.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    const status = button.parentElement.querySelector(".copied");
    if (!field || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = button.dataset.copied;
      } catch (e) {
        field.select();
        if (status) status.textContent = button.dataset.copyHint;
      }
    });
  }
  for (const field of document.querySelectorAll("input[readonly]")) {
    field.addEventListener("focus", () => field.select());
  }
});
