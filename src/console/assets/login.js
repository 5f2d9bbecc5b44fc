// Exchanges a moderator token and a name for a session cookie, then opens the queue.
import { api } from "/desk/assets/common.js";

const form = document.getElementById("login");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  try {
    await api("/desk/api/login", {
      method: "POST",
      body: {
        moderator: document.getElementById("moderator").value.trim(),
        token: document.getElementById("token").value,
      },
    });
    location.assign("/desk");
  } catch (err) {
    error.textContent = err.message;
  }
});
