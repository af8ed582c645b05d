"""Names of charm4py's API whose feature charmpy does not have yet: they
exist, and raise NotImplementedError naming the feature when used."""


def _missing(feature, what):
    raise NotImplementedError(f"{what}: {feature} is not available in this version of "
                              "charmpy yet")


def split(proxy, numsections, section_func=None, elems=None, **kwargs):
    _missing("sections", "charm.split()")


def combine(*proxies):
    _missing("sections", "charm.combine()")


def no_section(section):
    if section is not None:
        _missing("sections", "a reduction over a section (section=)")
