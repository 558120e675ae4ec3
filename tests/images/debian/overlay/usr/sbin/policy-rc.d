#!/bin/sh
# Containers have no init system: packages must not try to start services.
exit 101
