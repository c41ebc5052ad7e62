#!/bin/sh
# The sample application: says what it is.
echo "imgpipe sample app @VERSION@"
