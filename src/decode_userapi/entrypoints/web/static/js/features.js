// What this service offers beyond the base API, read from its OpenAPI document, so the page uses a
// route only where it exists (older or newer services keep working): accounts (AUTH=1), job events
// as a stream, a job's event history, cancelling a job, thumbnails.

export async function detectFeatures() {
  let paths = {};
  try {
    const response = await fetch("/openapi.json");
    if (response.ok) paths = (await response.json()).paths || {};
  } catch {
    // no document: the base API only
  }
  const has = (path, method) => Boolean(paths[path] && paths[path][method]);
  return {
    register: has("/user", "post"),
    eventStream: has("/jobs/events/stream", "get"),
    jobEvents: has("/jobs/{job_id}/events", "get"),
    cancel: has("/jobs/{job_id}/cancel", "post"),
    thumbnails: has("/files/{path}/thumbnail", "get"),
  };
}
