// libFuzzer target: every decoder of record_codec must turn any bytes into
// either a value or Status::Corrupt -- never a crash, hang or over-read
// (built with ASan and UBSan). A value that decodes must also re-encode to
// bytes that decode to the same value.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "record_codec.h"

namespace
{

template <typename T> void Check(std::string_view in)
{
	T value;
	if (!rbd::Decode(in, &value).ok())
		return;
	T again;
	if (!rbd::Decode(rbd::Encode(value), &again).ok() || !(again == value))
		std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view in(reinterpret_cast<const char *>(data), size);
	Check<rbd::MessageRecord>(in);
	Check<rbd::MailboxState>(in);
	Check<rbd::ChangeEntry>(in);
	Check<rbd::MailboxEntry>(in);
	Check<rbd::RootState>(in);
	Check<rbd::BodyMeta>(in);
	Check<rbd::BodyRef>(in);
	Check<rbd::InlineBody>(in);
	Check<rbd::KeywordEntry>(in);
	return 0;
}
