/* Opaque handles of the HAL objects, declared once so headers can name each other's types. */
#ifndef DSRT_HANDLES_H
#define DSRT_HANDLES_H

typedef struct dsrt_backend dsrt_backend; /* a registered implementation: cpu, cuda, hip, opencl, plugin */
typedef struct dsrt_device dsrt_device;   /* an opened device of a backend (ref-counted) */
typedef struct dsrt_buffer dsrt_buffer;   /* device memory (ref-counted, retains its device) */
typedef struct dsrt_stream dsrt_stream;   /* an in-order queue of work on one device */
typedef struct dsrt_event dsrt_event;     /* a point in a stream other streams can wait for */
typedef struct dsrt_graph dsrt_graph;     /* recorded stream work that can be replayed */
typedef struct dsrt_comm dsrt_comm;       /* one rank of a collective communicator */

#endif
