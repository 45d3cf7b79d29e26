// The build without MPI: world() never asks for an MPI communicator (it refuses an mpirun launch
// first), so reaching this is a bug.
#include <memory>
#include "backends/dist/communicator.h"
#include "core/error.h"

namespace megagrad::dist {

std::unique_ptr<Communicator> make_mpi_communicator() {
  fail("dist", "this megagrad was built without MPI");
}

}  // namespace megagrad::dist
