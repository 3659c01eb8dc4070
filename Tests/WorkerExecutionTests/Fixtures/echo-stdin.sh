#!/bin/sh
# Copies the prompt (standard input) to standard output unchanged.
exec cat
