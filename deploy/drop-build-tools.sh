#!/bin/sh
# Runs in the image after the Python packages are installed (bentofile.yaml: docker.setup_script).
# BentoML's Debian template apt-installs build-essential and gnupg2 for packages built from source; every
# serving dependency here is a binary wheel, so nothing needs them at run time and an intruder gets no
# compiler. (They stay in a lower image layer: this removes them from the filesystem, not from the size.)
set -eux
apt-get purge -y --auto-remove build-essential gnupg2 git gcc g++ make dpkg-dev
rm -rf /var/lib/apt/lists/*
