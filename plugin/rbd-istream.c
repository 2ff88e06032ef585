/* An istream over a message body in RADOS that reads only what is asked of
   it (rbd_body_reader): seekable, and with the size known up front from
   the body's metadata, so a partial FETCH or a BODY[section] of a large
   message reads the chunks it returns, and Dovecot never reads to the end
   to learn the size. A whole-body read goes front to back and is checked
   against the body's checksum at its end. */

#include "lib.h"
#include "buffer.h"
#include "istream-private.h"
#include "rbd-mail-storage.h"

/* What one read asks of RADOS: the first after an open or a seek asks
   for little (a partial FETCH wants a few bytes), each following one twice
   as much as the one before, up to the maximum. */
#define RBD_ISTREAM_FIRST_READ (64 * 1024)
#define RBD_ISTREAM_MAX_READ (1024 * 1024)

struct rbd_istream {
	struct istream_private istream;
	struct rbd_body_reader *reader;
	uoff_t size;
	/* The bytes RADOS returned last, at window_offset. Dovecot's buffer
	   grows a few KiB at a time and is refilled as it is consumed: a
	   round trip per refill would make a whole-body read crawl. */
	buffer_t *window;
	uoff_t window_offset;
	size_t next_read;
};

static void i_stream_rbd_destroy(struct iostream_private *stream)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream.iostream);

	rbd_body_reader_free(&rstream->reader);
	buffer_free(&rstream->window);
	i_stream_free_buffer(&rstream->istream);
}

/* Makes the window hold the bytes at `offset`. */
static int i_stream_rbd_fill_window(struct rbd_istream *rstream, uoff_t offset)
{
	struct istream_private *stream = &rstream->istream;
	size_t want = I_MIN(rstream->next_read, rstream->size - offset);
	struct rbd_error err;
	size_t got;

	buffer_set_used_size(rstream->window, 0);
	if (rbd_body_reader_read(
	            rstream->reader, offset,
	            buffer_append_space_unsafe(rstream->window, want), want,
	            &got, &err) != RBD_OK) {
		buffer_set_used_size(rstream->window, 0);
		io_stream_set_error(&stream->iostream, "%s", err.message);
		stream->istream.stream_errno =
		        err.code == RBD_ERR_NOT_FOUND ? ENOENT : EIO;
		return -1;
	}
	buffer_set_used_size(rstream->window, got);
	if (got == 0) {
		io_stream_set_error(&stream->iostream,
		                    "body ends at %" PRIuUOFF_T
		                    ", before its size %" PRIuUOFF_T,
		                    offset, rstream->size);
		stream->istream.stream_errno = EIO;
		return -1;
	}
	rstream->window_offset = offset;
	rstream->next_read =
	        I_MIN(rstream->next_read * 2, RBD_ISTREAM_MAX_READ);
	return 0;
}

static ssize_t i_stream_rbd_read(struct istream_private *stream)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream);
	uoff_t offset = stream->istream.v_offset + (stream->pos - stream->skip);
	size_t avail, n;

	if (offset >= rstream->size) {
		stream->istream.eof = TRUE;
		return -1;
	}
	if (!i_stream_try_alloc(stream, RBD_ISTREAM_FIRST_READ, &avail))
		return -2;
	if ((offset < rstream->window_offset ||
	     offset >= rstream->window_offset + rstream->window->used) &&
	    i_stream_rbd_fill_window(rstream, offset) < 0)
		return -1;
	n = I_MIN(avail,
	          rstream->window_offset + rstream->window->used - offset);
	memcpy(stream->w_buffer + stream->pos,
	       CONST_PTR_OFFSET(rstream->window->data,
	                        offset - rstream->window_offset),
	       n);
	stream->pos += n;
	return n;
}

static void i_stream_rbd_seek(struct istream_private *stream, uoff_t v_offset,
                              bool mark ATTR_UNUSED)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream);

	if (v_offset != stream->istream.v_offset + (stream->pos - stream->skip))
		rstream->next_read = RBD_ISTREAM_FIRST_READ;
	stream->istream.v_offset = v_offset;
	stream->skip = stream->pos = 0;
}

static int i_stream_rbd_stat(struct istream_private *stream,
                             bool exact ATTR_UNUSED)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream);

	stream->statbuf.st_size = rstream->size;
	return 0;
}

static struct istream *i_stream_create_rbd_body(struct rbd_body_reader *reader,
                                                uoff_t size)
{
	struct rbd_istream *rstream;

	rstream = i_new(struct rbd_istream, 1);
	rstream->reader = reader;
	rstream->size = size;
	rstream->window =
	        buffer_create_dynamic(default_pool, RBD_ISTREAM_MAX_READ);
	rstream->next_read = RBD_ISTREAM_FIRST_READ;
	rstream->istream.iostream.destroy = i_stream_rbd_destroy;
	rstream->istream.max_buffer_size = RBD_ISTREAM_MAX_READ;
	rstream->istream.read = i_stream_rbd_read;
	rstream->istream.seek = i_stream_rbd_seek;
	rstream->istream.stat = i_stream_rbd_stat;
	rstream->istream.istream.blocking = TRUE;
	rstream->istream.istream.seekable = TRUE;
	return i_stream_create(&rstream->istream, NULL, -1, 0);
}

int rbd_body_istream_open(struct rbd_mailbox *mbox,
                          const struct rbd_record *record,
                          struct istream **input_r, struct rbd_error *err_r)
{
	struct rbd_body_reader *reader;
	uint64_t size;

	if (rbd_body_reader_open(mbox->index, record, &reader, &size, err_r) !=
	    RBD_OK)
		return -1;
	*input_r = i_stream_create_rbd_body(reader, size);
	return 0;
}
