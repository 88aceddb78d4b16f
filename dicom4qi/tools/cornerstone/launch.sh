#!/bin/sh
# The adapter's command (dicom4qi-adapter.json): runs index.mjs on the request on standard input, from the setup
# step's V8 startup snapshot of the release asked for (bundle.mjs) where there is one whose key is current (this
# folder, index.mjs's sha256), else as a plain ES module. Either way one node process per request, which replaces
# this shell (its exit status or signal is the call's).
request=$(cat)
release=$(printf '%s' "$request" | sed -n 's/.*"variant": *"\([0-9][0-9A-Za-z.-]*\)".*/\1/p')
blob="node_modules/.dicom4qi-snapshot-${release:-default}.blob"
if [ -z "$DICOM4QI_NO_SNAPSHOT" ] && [ -f "$blob" ] && [ -f "${blob%.blob}.key" ] &&
  [ "$(cat "${blob%.blob}.key")" = "$(pwd) $(sha256sum index.mjs | cut -d' ' -f1)" ]; then
  exec node --snapshot-blob "$blob" <<END_OF_REQUEST
$request
END_OF_REQUEST
fi
exec node index.mjs <<END_OF_REQUEST
$request
END_OF_REQUEST
