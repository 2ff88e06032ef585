/* An istream over a message body in RADOS that reads only what is asked of
   it (rbd_body_reader): seekable, and with the size known up front from
   the body's metadata, so a partial FETCH or a BODY[section] of a large
   message reads the chunks it returns, and Dovecot never reads to the end
   to learn the size. A whole-body read goes front to back and is checked
   against the body's checksum at its end. */

#include "lib.h"
#include "istream-private.h"
#include "rbd-mail-storage.h"

/* What one read asks of RADOS at most: also the stream's buffer size. */
#define RBD_ISTREAM_READ_SIZE (1024 * 1024)

struct rbd_istream {
	struct istream_private istream;
	struct rbd_body_reader *reader;
	uoff_t size;
};

static void i_stream_rbd_destroy(struct iostream_private *stream)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream.iostream);

	rbd_body_reader_free(&rstream->reader);
	i_stream_free_buffer(&rstream->istream);
}

static ssize_t i_stream_rbd_read(struct istream_private *stream)
{
	struct rbd_istream *rstream =
	        container_of(stream, struct rbd_istream, istream);
	uoff_t offset = stream->istream.v_offset + (stream->pos - stream->skip);
	struct rbd_error err;
	size_t avail, got;

	if (offset >= rstream->size) {
		stream->istream.eof = TRUE;
		return -1;
	}
	if (!i_stream_try_alloc(stream, RBD_ISTREAM_READ_SIZE, &avail))
		return -2;
	if (avail > rstream->size - offset)
		avail = rstream->size - offset;
	if (rbd_body_reader_read(rstream->reader, offset,
	                         stream->w_buffer + stream->pos, avail, &got,
	                         &err) != RBD_OK) {
		io_stream_set_error(&stream->iostream, "%s", err.message);
		stream->istream.stream_errno =
		        err.code == RBD_ERR_NOT_FOUND ? ENOENT : EIO;
		return -1;
	}
	if (got == 0) {
		io_stream_set_error(&stream->iostream,
		                    "body ends at %" PRIuUOFF_T
		                    ", before its size %" PRIuUOFF_T,
		                    offset, rstream->size);
		stream->istream.stream_errno = EIO;
		return -1;
	}
	stream->pos += got;
	return got;
}

static void i_stream_rbd_seek(struct istream_private *stream, uoff_t v_offset,
                              bool mark ATTR_UNUSED)
{
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
	rstream->istream.iostream.destroy = i_stream_rbd_destroy;
	rstream->istream.max_buffer_size = RBD_ISTREAM_READ_SIZE;
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
