# A local stand-in for python:3.11-slim-bookworm where no registry is reachable: Debian bookworm's own
# Python 3.11 from a debootstrap root file system. `make base-image` builds it (docker/base-image.sh makes
# the tarball); nothing here is pulled.
FROM scratch
ADD rootfs.tar /
# Debian's Python refuses pip into the system (PEP 668), so a venv on PATH plays the official image's
# /usr/local Python: `python`, `python3` and `pip` are 3.11 and installs go into it.
RUN python3 -m venv /opt/python
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
