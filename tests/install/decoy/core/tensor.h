// A user's own header at a path megagrad's sources also use (core/tensor.h). The installed
// megagrad headers include "megagrad/core/tensor.h", so reaching this file means they do not.
#error "megagrad's installed headers reached the user's core/tensor.h (an unprefixed include)"
