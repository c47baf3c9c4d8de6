"""What a block and its golden twin share: the checks of their elaboration parameters.

``hw`` and ``golden`` never import each other; both import this package, so a parameter is
accepted or refused with the same message by the block and by its twin.
"""
