"""TensorFlow's variable scopes for shadows, opened in constant time.

`slot_creator.create_slot` names a shadow by opening `variable_scope(None, default_name=
"<variable>/<name>")`. TensorFlow finds that scope's unique name by trying `<variable>/<name>`,
then `_1`, `_2`, ... in turn, and on leaving a scope walks every scope name counted so far to reset
the scope's subscopes: N shadows (or N variables sharing a name) cost O(N^2). `open_scope` opens
the same scopes, with the same name scopes and counts (TensorFlow's own, so that later scopes,
ours and others', are named as before), but finds the unique name by resuming where the last
search for the same name stopped, and resets subscopes through an index of the counted names.
"""
import contextlib
import weakref

from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import variable_scope as tf_variable_scope

# Variable-scope store (one per graph) -> its _ScopeIndex.
_INDEXES = weakref.WeakKeyDictionary()


def _parents(scope_name):
  """'a/', 'a/b/' for 'a/b/c': the names of the scopes whose subscopes it is, with the '/'."""
  end = scope_name.find("/")
  while end >= 0:
    yield scope_name[:end + 1]
    end = scope_name.find("/", end + 1)


class _ScopeIndex:
  """The scope names a store has counted, indexed by parent scope, and where the last search for
  each unique name stopped.

  The index stays valid as TensorFlow adds names to the store's counts (appended, so new ones
  are found by their number); when the store replaces its counts (leaving a scope opened from a
  VariableScope object restores a copy) it is rebuilt. A count only drops to 0 when a parent
  scope is left: such a reset restarts the searches.
  """

  def __init__(self, store):
    self.store = store
    self._counts = None
    self._indexed = 0  # How many of self._counts' names are in self._parents.
    self._parents = set()
    self._resume = {}  # Full default scope name -> the first suffix the next search tries.

  def update(self):
    """Catches up with the store's counts."""
    counts = self.store.variable_scopes_count
    if counts is not self._counts or len(counts) < self._indexed:
      self._counts, self._indexed, self._parents, self._resume = counts, 0, set(), {}
    if len(counts) > self._indexed:
      added = list(counts)[self._indexed:] if self._indexed else counts
      for name in added:
        self._parents.update(_parents(name))
      self._indexed = len(counts)

  def opened(self, scope_name):
    """Indexes `scope_name`, just opened: the one name its opening added, if any, when the
    index was up to date before."""
    if self._counts is self.store.variable_scopes_count and len(self._counts) == self._indexed + 1:
      self._parents.update(_parents(scope_name))
      self._indexed += 1

  def restart_searches(self):
    self._resume = {}

  def unique_name(self, prefix):
    """`_get_unique_variable_scope(prefix)`: `prefix`, or `prefix_<k>` with the smallest k >= 1
    whose scope is not counted, in the current variable scope."""
    self.update()
    current = self.store.current_scope.name
    name = current + "/" + prefix if current else prefix
    counted = self._counts.get
    if not counted(name, 0):
      return prefix
    suffix = self._resume.get(name, 1)
    while counted("%s_%d" % (name, suffix), 0):
      suffix += 1
    self._resume[name] = suffix  # Counted once opened: the next search goes on from there.
    return "%s_%d" % (prefix, suffix)

  def close_subscopes(self, scope_name):
    """`close_variable_subscopes(scope_name)`, walking the counts only if it has subscopes."""
    self.update()
    if scope_name + "/" in self._parents:
      self.store.close_variable_subscopes(scope_name)
      self.restart_searches()


def _index():
  store = tf_variable_scope.get_variable_scope_store()
  index = _INDEXES.get(store)
  if index is None:
    index = _INDEXES[store] = _ScopeIndex(store)
  return index


def restart_searches():
  """Forgets where the unique-name searches of the current graph stopped: the counts may have
  been reset since (call before each batch of shadows)."""
  _index().restart_searches()


class _PureScope(tf_variable_scope._pure_variable_scope):  # pylint: disable=protected-access
  """TensorFlow's variable scope of a string name, closing its subscopes through the index."""

  def __init__(self, index, name, old_name_scope):
    super().__init__(name, old_name_scope=old_name_scope, dtype=None)
    self._index = index

  def __enter__(self):
    self._index.update()
    scope = super().__enter__()
    self._index.opened(self._new_name)
    return scope

  def __exit__(self, *unused_exception):
    if self._var_scope_store.current_scope is not self._last_variable_scope_object:
      raise RuntimeError("Improper nesting of variable_scope.")
    self._index.close_subscopes(self._new_name)
    self._var_scope_store.current_scope = self._old


@contextlib.contextmanager
def open_scope(name, unique):
  """`tf.compat.v1.variable_scope(None, default_name=name)` (`unique`) or
  `tf.compat.v1.variable_scope(name)`: the same name scope, variable scope and counts."""
  with tf_ops.name_scope(name, skip_on_eager=False) as name_scope:
    index = _index()
    scope_name = index.unique_name(name) if unique else name
    with _PureScope(index, scope_name, name_scope) as scope:
      yield scope


def claim_unique_scope(name):
  """The full name of the scope `open_scope(name, unique=True)` would open, counted as opened and
  then left, without opening it: for eager code, where the name scope it would enter changes
  nothing (eager name scopes are not counted) and nothing else is created in it."""
  index = _index()
  current = index.store.current_scope.name
  relative = index.unique_name(name)
  scope_name = current + "/" + relative if current else relative
  index.store.open_variable_scope(scope_name)
  index.opened(scope_name)
  index.close_subscopes(scope_name)
  return scope_name
