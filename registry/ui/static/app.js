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
  // a run in progress (data-follow="SECONDS"): fetch the page again and show its state
  // until the run ends; without this, the page's Refresh link does the same
  const follow = document.querySelector("[data-follow]");
  if (follow && window.fetch && window.DOMParser) {
    const every = 1000 * Number(follow.dataset.follow || 2);
    const tick = async () => {
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(follow.id);
        const current = document.getElementById(follow.id);
        if (fresh && current) current.replaceWith(fresh);
        if (fresh && fresh.dataset.follow) setTimeout(tick, every);
      } catch (e) {
        setTimeout(tick, every * 2);
      }
    };
    setTimeout(tick, every);
  }
  for (const field of document.querySelectorAll("input[readonly]")) {
    field.addEventListener("focus", () => field.select());
  }
});
