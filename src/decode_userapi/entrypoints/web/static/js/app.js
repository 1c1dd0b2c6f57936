// The page's start: where to sign in, what this service offers, and a hash router over the sections
// (#/files, #/jobs, #/jobs/<id>, #/new). Sections keep their state while hidden.

import { Api } from "./api.js";
import { SignIn } from "./auth.js";
import { FilesView } from "./files.js";
import { JobForm, JobPage, JobsTable } from "./jobs.js";
import { detectFeatures } from "./features.js";
import { ChangeStream } from "./live.js";
import { say } from "./ui.js";

const api = new Api();

async function start() {
  const [config, accessInfo, features] = await Promise.all([
    fetch("/ui/config.json").then((r) => r.json()),
    fetch("/access_info").then((r) => r.json()),
    detectFeatures(),
  ]);
  const files = new FilesView(api);
  const stream = new ChangeStream(api, features.eventStream);
  const jobsTable = new JobsTable(api, features, stream);
  const jobPage = new JobPage(api, features, stream);
  const jobForm = new JobForm(api, files);
  const views = { files, jobs: jobsTable, job: jobPage, new: jobForm };

  const who = document.getElementById("who-name");
  const signOut = document.getElementById("sign-out");
  const showUser = (name) => {
    who.textContent = name ? `Signed in as ${name}` : "";
    signOut.hidden = !name;
  };
  const signIn = new SignIn(api, {
    accessInfo,
    features,
    config,
    onSignedIn: (name) => {
      // Someone else signed in where the session ended: start afresh rather than show them the
      // previous user's page.
      if (who.dataset.user && who.dataset.user !== name) location.reload();
      who.dataset.user = name;
      showUser(name);
      stream.wake();
    },
  });
  // Signing out forgets the token and everything the page holds (a fresh page: the next user of
  // this browser sees nothing of the last one's files or jobs).
  signOut.addEventListener("click", () => {
    api.clearSession();
    stream.close();
    location.assign("/ui/");
  });

  let current = null;
  function route() {
    const hash = location.hash || "#/files";
    const match = /^#\/(files|jobs|new)(?:\/(\d+))?/.exec(hash) || [null, "files"];
    let name = match[1];
    if (name === "jobs" && match[2]) name = "job";
    for (const section of document.querySelectorAll(".section")) section.hidden = section.id !== `section-${name}`;
    for (const link of document.querySelectorAll("nav a")) {
      const active = link.dataset.section === (name === "job" ? "jobs" : name);
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (current && current !== views[name] && current.hide) current.hide();
    current = views[name];
    current.show(match[2] ? Number(match[2]) : undefined, new URLSearchParams(hash.split("?")[1] || ""));
  }

  if (!api.signedIn()) await signIn.ask();
  who.dataset.user = api.session.username;
  showUser(api.session.username);
  window.addEventListener("hashchange", route);
  route();
}

start().catch((error) => say(`The page could not start: ${error.message || error}`, true));
