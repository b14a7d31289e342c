"""The daemon's own API and pages: the catalog API, mirror and convert jobs, Modelfiles, the OpenAPI
document and the catalog page."""
