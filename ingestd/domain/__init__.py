"""The pure core of ingestd: models, states, flags, policy and canonical bytes.

Nothing here touches disks, devices, networks or the wall clock; time is always an argument.
Only the standard library may be imported (a unit test enforces it).
"""
