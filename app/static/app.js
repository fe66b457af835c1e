// Send the chosen photo to POST /predict and show the answer without leaving the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const button = form.querySelector("button");
  const status = document.getElementById("status");
  const list = document.getElementById("top-classes");
  const preview = document.getElementById("preview");
  const previewImage = document.getElementById("preview-image");
  let previewUrl = null;

  function percent(p) {
    return `${(100 * p).toFixed(1)}%`;
  }

  function showError(message) {
    status.textContent = message;
    status.className = "error";
    list.replaceChildren();
  }

  function showPrediction(body) {
    status.className = "";
    status.textContent = `Prediction: ${body.prediction} (${percent(body.probability)})`;
    list.replaceChildren(...body.top.map((entry) => {
      const item = document.createElement("li");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = percent(entry.probability);
      item.append(`${entry.class}: ${percent(entry.probability)}`, bar);
      return item;
    }));
  }

  input.addEventListener("change", () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    const file = input.files[0];
    preview.hidden = !file;
    if (file) {
      previewUrl = URL.createObjectURL(file);
      previewImage.src = previewUrl;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      showError("Choose a photo first.");
      return;
    }
    button.disabled = true;
    status.className = "";
    status.textContent = "Classifying...";
    try {
      const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
      const body = await response.json();
      if (response.ok) showPrediction(body);
      else showError(`Error ${response.status}: ${body.error}`);
    } catch (err) {
      showError(`The request failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  });
});
