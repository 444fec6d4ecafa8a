"""What every hyojunka process stands on: settings, logging, the Temporal connection and the
Temporal binaries. The API, the worker and the command line import it; it imports none of
them."""
